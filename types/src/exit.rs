//! [`exit_code`]: how every trtfarm binary ends, so that scripts can tell its outcomes apart
//! whichever binary they ran.

use std::fmt::Display;
use std::process::ExitCode;

/// 0 when the command succeeded, 1 when it ran and found a problem (`Ok(false)`), 2 when it
/// could not run; the error is printed to stderr first, with its causes (`{:#}`), no backtrace.
pub fn exit_code<E: Display>(result: Result<bool, E>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_has_its_own_code() {
        assert_eq!(exit_code::<String>(Ok(true)), ExitCode::SUCCESS);
        assert_eq!(exit_code::<String>(Ok(false)), ExitCode::FAILURE);
        assert_eq!(exit_code(Err("cannot run")), ExitCode::from(2));
    }
}
