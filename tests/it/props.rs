//! Property tests of the parsers every request goes through: cursors, ids, slugs and
//! decimals. Each must never panic on any input, and must round-trip what we produce.

use std::str::FromStr as _;

use async_graphql::{ScalarType as _, Value};
use gitstore_api::datastore::{CategoryId, CollectionId, Key, ProductId, Timestamp};
use gitstore_api::graphql::cursor;
use gitstore_api::graphql::scalars::Money;
use gitstore_api::service::validate;
use proptest::prelude::*;
use rust_decimal::Decimal;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn cursors_round_trip(millis in any::<i64>(), id in ".{0,80}") {
        let key = Key { created_at: Timestamp::from_millis(millis), id };
        prop_assert_eq!(cursor::decode(&cursor::encode(&key)), Some(key));
    }

    #[test]
    fn any_text_decodes_to_a_cursor_or_to_nothing(text in ".{0,200}") {
        if let Some(key) = cursor::decode(&text) {
            // Whatever decodes names a position that encodes back to a decodable cursor.
            prop_assert_eq!(cursor::decode(&cursor::encode(&key)), Some(key));
        }
    }

    #[test]
    fn hex_of_anything_decodes_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = cursor::decode(&hex::encode(bytes));
    }

    #[test]
    fn ids_parse_only_their_own_shape(text in ".{0,40}") {
        let parsed = ProductId::parse(&text);
        let shaped = text.strip_prefix("prod_").is_some_and(|s| {
            s.len() == 26 && s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        });
        prop_assert_eq!(parsed.is_some(), shaped);
    }

    #[test]
    fn generated_ids_parse_as_their_entity_only(_n in 0..50_u8) {
        let product = ProductId::generate();
        prop_assert!(ProductId::parse(product.as_str()).is_some());
        prop_assert!(CategoryId::parse(product.as_str()).is_none());
        prop_assert!(CollectionId::parse(product.as_str()).is_none());
        let category = CategoryId::generate();
        prop_assert!(CategoryId::parse(category.as_str()).is_some());
        prop_assert!(ProductId::parse(category.as_str()).is_none());
    }

    #[test]
    fn well_formed_slugs_are_accepted(slug in "[a-z0-9]{1,12}(-[a-z0-9]{1,12}){0,6}") {
        prop_assert!(validate::slug(&slug).is_ok());
    }

    #[test]
    fn slugs_with_a_foreign_character_are_refused(
        head in "[a-z0-9]{0,8}",
        bad in "[A-Z_ .é/]|--",
        tail in "[a-z0-9]{0,8}",
    ) {
        let slug = format!("{head}{bad}{tail}");
        prop_assert!(validate::slug(&slug).is_err(), "{:?} accepted", slug);
    }

    #[test]
    fn any_text_is_checked_as_a_slug_without_panicking(text in ".{0,300}") {
        let _ = validate::slug(&text);
        let _ = validate::sku(&text);
    }

    #[test]
    fn decimals_round_trip_exactly(mantissa in any::<i64>(), scale in 0_u32..=8) {
        let value = Decimal::new(mantissa, scale);
        let parsed = Money::parse(Value::String(value.to_string())).expect("our own output parses");
        prop_assert_eq!(parsed.0, value);
        prop_assert_eq!(parsed.0.to_string(), value.to_string(), "scale kept");
    }

    #[test]
    fn float_literals_keep_their_shortest_text(whole in 0_u32..1_000_000, cents in 0_u32..100) {
        let text = format!("{whole}.{cents:02}");
        let number: f64 = text.parse().expect("a float");
        let n = async_graphql::Number::from_f64(number).expect("finite");
        let parsed = Money::parse(Value::Number(n)).expect("a decimal");
        prop_assert_eq!(parsed.0, Decimal::from_str(&text).expect("decimal"));
    }

    #[test]
    fn any_text_is_a_decimal_or_a_coded_refusal(text in ".{0,60}") {
        let _ = Money::parse(Value::String(text));
    }
}
