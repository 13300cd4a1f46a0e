//! Which manifest setting a refusal is about. A daemon that refuses a submission because of one
//! setting of the engine (its `toolchain`, say) names the setting in the status's metadata, so
//! a client holding the manifest's text can point at the line and column where it is written.

use tonic::Status;
use tonic::metadata::MetadataValue;

/// The metadata key naming the refused setting, e.g. `toolchain`.
pub const REFUSED_SETTING: &str = "trtfarm-refused-setting";

/// `status`, marked as a refusal of the engine's setting `key` (a manifest key such as
/// `toolchain`).
pub fn refusing_setting(mut status: Status, key: &'static str) -> Status {
    status
        .metadata_mut()
        .insert(REFUSED_SETTING, MetadataValue::from_static(key));
    status
}

/// The setting a refusal names, if it names one.
pub fn refused_setting(status: &Status) -> Option<&str> {
    status.metadata().get(REFUSED_SETTING)?.to_str().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_refusal_names_its_setting_and_others_name_none() {
        let refused = refusing_setting(Status::failed_precondition("no 1.6 here"), "toolchain");
        assert_eq!(refused_setting(&refused), Some("toolchain"));
        assert_eq!(refused.message(), "no 1.6 here");
        assert_eq!(refused_setting(&Status::failed_precondition("x")), None);
    }
}
