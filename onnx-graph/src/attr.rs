//! Node attributes for [`GraphBuilder::node`](crate::GraphBuilder::node).

use crate::proto::AttributeProto;
use crate::proto::attribute_proto::AttributeType;

fn named(name: &str, kind: AttributeType) -> AttributeProto {
    AttributeProto {
        name: Some(name.to_owned()),
        r#type: Some(kind as i32),
        ..AttributeProto::default()
    }
}

/// An integer attribute, e.g. `int("axis", 1)`.
pub fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        i: Some(value),
        ..named(name, AttributeType::Int)
    }
}

/// A list-of-integers attribute, e.g. `ints("kernel_shape", [3, 3])`.
pub fn ints(name: &str, values: impl IntoIterator<Item = i64>) -> AttributeProto {
    AttributeProto {
        ints: values.into_iter().collect(),
        ..named(name, AttributeType::Ints)
    }
}

/// A float attribute, e.g. `float("epsilon", 1e-5)`.
pub fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        f: Some(value),
        ..named(name, AttributeType::Float)
    }
}

/// A list-of-floats attribute.
pub fn floats(name: &str, values: impl IntoIterator<Item = f32>) -> AttributeProto {
    AttributeProto {
        floats: values.into_iter().collect(),
        ..named(name, AttributeType::Floats)
    }
}

/// A string attribute, e.g. `string("auto_pad", "SAME_UPPER")`.
pub fn string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        s: Some(value.as_bytes().to_vec()),
        ..named(name, AttributeType::String)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_name_type_and_exactly_one_value() {
        let a = ints("pads", [1, 1, 1, 1]);
        assert_eq!(a.name.as_deref(), Some("pads"));
        assert_eq!(a.r#type, Some(AttributeType::Ints as i32));
        assert_eq!(a.ints, [1, 1, 1, 1]);
        assert_eq!((a.i, a.f, a.s.as_ref()), (None, None, None));

        assert_eq!(int("axis", -1).i, Some(-1));
        assert_eq!(float("alpha", 0.5).f, Some(0.5));
        assert_eq!(floats("scales", [1.0, 2.0]).floats, [1.0, 2.0]);
        assert_eq!(
            string("mode", "nearest").s.as_deref(),
            Some(&b"nearest"[..])
        );
    }
}
