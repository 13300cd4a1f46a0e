//! The PostgreSQL test server itself: it answers queries, and what was committed survives a
//! restart and a kill (crash recovery), so tests built on it can trust both.
//!
//! Needs PostgreSQL from `scripts/setup` (`eval "$(scripts/setup --print-env)"`).

use std::time::Instant;

use integration::postgres::TestPostgres;

#[test]
fn committed_rows_survive_restart_and_kill() {
    let started = Instant::now();
    let mut server = TestPostgres::start();
    eprintln!("started in {:?} at {}", started.elapsed(), server.url());
    assert_eq!(
        server.url(),
        format!("postgres://trtfarm@127.0.0.1:{}/postgres", server.port())
    );
    assert_eq!(server.psql("select 1"), "1");
    server.psql("create table kept (id integer primary key, name text not null)");
    server.psql("insert into kept values (1, 'first')");

    let restarted = Instant::now();
    server.restart();
    eprintln!("restarted in {:?}", restarted.elapsed());
    assert_eq!(server.psql("select id, name from kept"), "1|first");

    server.kill();
    let recovered = Instant::now();
    server.restart();
    eprintln!("recovered from a kill in {:?}", recovered.elapsed());
    assert_eq!(server.psql("select id, name from kept"), "1|first");
}
