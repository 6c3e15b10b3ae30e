//! What the Iceberg spec requires that the iceberg crate's types accept when
//! they are deserialized: a schema sent as `decimal(99, 200)` parses, but no
//! engine can read a table with it.

use iceberg::spec::{PrimitiveType, Schema, Type};

use crate::error::{Error, ErrorKind, Result};

/// Largest decimal precision Iceberg allows.
pub const MAX_DECIMAL_PRECISION: u32 = 38;

/// Every decimal of the schema, nested ones too, has precision 1 to 38 and
/// scale 0 to its precision.
pub fn check_schema(schema: &Schema) -> Result<()> {
    let mut fields: Vec<_> = schema.field_id_to_fields().values().collect();
    fields.sort_by_key(|f| f.id);
    for field in fields {
        if let Type::Primitive(PrimitiveType::Decimal { precision, scale }) = *field.field_type {
            if !(1..=MAX_DECIMAL_PRECISION).contains(&precision) || scale > precision {
                return Err(Error::new(
                    ErrorKind::InvalidChange,
                    format!(
                        "field {:?} (id {}): decimal({precision}, {scale}) is not a valid Iceberg type; \
                         precision must be 1 to {MAX_DECIMAL_PRECISION} and scale 0 to the precision",
                        field.name, field.id
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_with(types: &[&str]) -> Schema {
        let fields: Vec<_> = types
            .iter()
            .enumerate()
            .map(|(i, t)| serde_json::json!({ "id": i + 1, "name": format!("c{i}"), "required": false, "type": t }))
            .collect();
        serde_json::from_value(
            serde_json::json!({ "type": "struct", "schema-id": 0, "fields": fields }),
        )
        .unwrap()
    }

    #[test]
    fn decimals_out_of_range_are_refused() {
        assert!(check_schema(&schema_with(&["decimal(38, 38)", "decimal(1, 0)", "long"])).is_ok());
        for bad in [
            "decimal(99, 200)",
            "decimal(39, 0)",
            "decimal(0, 0)",
            "decimal(10, 11)",
        ] {
            let err = check_schema(&schema_with(&["long", bad])).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidChange);
            assert!(err.to_string().contains("\"c1\" (id 2)"), "{err}");
        }
    }

    #[test]
    fn nested_decimals_are_checked() {
        let nested: Schema = serde_json::from_value(serde_json::json!({
            "type": "struct", "schema-id": 0, "fields": [
                { "id": 1, "name": "l", "required": false, "type": {
                    "type": "list", "element-id": 2, "element-required": false, "element": "decimal(50, 2)" } }
            ]
        }))
        .unwrap();
        assert!(check_schema(&nested).is_err());
    }
}
