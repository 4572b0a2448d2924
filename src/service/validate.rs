//! Input limits of SPEC §2, each check naming the offending value.

use rust_decimal::Decimal;

use crate::error::{Error, Result};

/// Longest sku.
pub const SKU_MAX: usize = 64;
/// Longest title or name, in characters.
pub const NAME_MAX: usize = 200;
/// Longest slug.
pub const SLUG_MAX: usize = 100;
/// Most images on a product.
pub const IMAGES_MAX: usize = 50;
/// Longest image URL.
pub const IMAGE_LEN_MAX: usize = 2048;
/// Deepest nesting of metadata (an object holding an object is depth 2).
pub const METADATA_DEPTH_MAX: usize = 32;
/// Most object keys in metadata, counted at every level.
pub const METADATA_KEYS_MAX: usize = 1_000;
/// Largest body or metadata, in bytes.
pub const BLOB_MAX: usize = 64 * 1024;
/// Most fractional digits of a price.
pub const PRICE_SCALE_MAX: u32 = 8;
/// Largest page size unless configured (`GITSTORE_GRAPHQL_MAX_PAGE_SIZE`).
pub const PAGE_MAX: u32 = 1000;
/// Page size when neither `first` nor `last` is given, unless configured
/// (`GITSTORE_GRAPHQL_DEFAULT_PAGE_SIZE`).
pub const PAGE_DEFAULT: u32 = 100;

/// The page sizes a listing accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageSizes {
    /// Rows when neither `first` nor `last` is given.
    pub default: u32,
    /// Largest `first`/`last`.
    pub max: u32,
}

impl Default for PageSizes {
    fn default() -> Self {
        Self {
            default: PAGE_DEFAULT,
            max: PAGE_MAX,
        }
    }
}

fn invalid(message: String) -> Error {
    Error::InvalidArgument(message)
}

/// Shortens a value for an error message so a 64 KiB input doesn't echo back whole.
pub(crate) fn shown(value: &str) -> String {
    const SHOWN_MAX: usize = 80;
    if value.chars().count() <= SHOWN_MAX {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(SHOWN_MAX).collect();
        format!("{head:?}…")
    }
}

/// `1..=max` characters of `[A-Za-z0-9._-]`, the alphabet of skus and version tags.
fn key_token(field: &str, value: &str, max: usize) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field} {} must be 1-{max} characters of A-Z, a-z, 0-9, '.', '_' or '-'",
            shown(value)
        )))
    }
}

/// `1..=64` characters of `[A-Za-z0-9._-]`.
pub fn sku(value: &str) -> Result<()> {
    key_token("sku", value, SKU_MAX)
}

/// A title or name: 1–200 characters, not only whitespace.
pub fn name(field: &str, value: &str) -> Result<()> {
    let chars = value.chars().count();
    if value.trim().is_empty() || chars > NAME_MAX {
        return Err(invalid(format!(
            "{field} {} must be 1-{NAME_MAX} characters and not blank",
            shown(value)
        )));
    }
    Ok(())
}

/// Lower-case words of `[a-z0-9]` joined by single hyphens, at most 100 characters.
pub fn slug(value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= SLUG_MAX
        && value.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "slug {} must match ^[a-z0-9]+(-[a-z0-9]+)*$ and be at most {SLUG_MAX} characters",
            shown(value)
        )))
    }
}

/// Three upper-case ASCII letters.
pub fn currency(value: &str) -> Result<()> {
    if value.len() == 3 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(invalid(format!(
            "currency {} must be a 3-letter upper-case ISO 4217 code",
            shown(value)
        )))
    }
}

/// Non-negative with at most 8 fractional digits.
pub fn price(value: Decimal) -> Result<()> {
    if value.is_sign_negative() && !value.is_zero() {
        return Err(invalid(format!("price {value} must not be negative")));
    }
    if value.scale() > PRICE_SCALE_MAX {
        return Err(invalid(format!(
            "price {value} has more than {PRICE_SCALE_MAX} fractional digits"
        )));
    }
    Ok(())
}

/// Zero or more.
pub fn quantity(value: Option<i32>) -> Result<()> {
    match value {
        Some(q) if q < 0 => Err(invalid(format!(
            "inventoryQuantity {q} must not be negative"
        ))),
        _ => Ok(()),
    }
}

/// At most 50 absolute `http`/`https` URLs of at most 2048 characters each.
pub fn images(values: &[String]) -> Result<()> {
    if values.len() > IMAGES_MAX {
        return Err(invalid(format!(
            "images has {} entries, at most {IMAGES_MAX} are allowed",
            values.len()
        )));
    }
    for image in values {
        if image.trim().is_empty() || image.chars().count() > IMAGE_LEN_MAX {
            return Err(invalid(format!(
                "image {} must be 1-{IMAGE_LEN_MAX} characters",
                shown(image)
            )));
        }
        let web = url::Url::parse(image).is_ok_and(|url| {
            matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some_and(|h| !h.is_empty())
        });
        if !web || image.chars().any(char::is_whitespace) {
            return Err(invalid(format!(
                "image {} must be an absolute http or https URL",
                shown(image)
            )));
        }
    }
    Ok(())
}

/// A body (markdown) of at most 64 KiB.
pub fn body(value: Option<&str>) -> Result<()> {
    match value {
        Some(b) if b.len() > BLOB_MAX => Err(invalid(format!(
            "body is {} bytes, at most {BLOB_MAX} are allowed",
            b.len()
        ))),
        _ => Ok(()),
    }
}

/// A JSON object of at most 64 KiB serialised, nested at most 32 levels deep, with at
/// most 1,000 keys in all: what every backend can store *and read back* (SQLite's and
/// serde_json's readers stop at 128 levels, so deeper documents would be written but
/// never read again).
pub fn metadata(value: Option<&serde_json::Value>) -> Result<()> {
    let Some(value) = value else { return Ok(()) };
    if !value.is_object() {
        return Err(invalid(format!(
            "metadata must be a JSON object, got {}",
            shown(&value.to_string())
        )));
    }
    let (depth, keys) = shape(value);
    if depth > METADATA_DEPTH_MAX {
        return Err(invalid(format!(
            "metadata is nested {depth} levels deep, at most {METADATA_DEPTH_MAX} are allowed"
        )));
    }
    if keys > METADATA_KEYS_MAX {
        return Err(invalid(format!(
            "metadata has {keys} keys, at most {METADATA_KEYS_MAX} are allowed"
        )));
    }
    let size = value.to_string().len();
    if size > BLOB_MAX {
        return Err(invalid(format!(
            "metadata is {size} bytes, at most {BLOB_MAX} are allowed"
        )));
    }
    Ok(())
}

/// Nesting depth and number of object keys of a JSON value, without recursion (a hostile
/// document must not be able to exhaust the stack here).
fn shape(value: &serde_json::Value) -> (usize, usize) {
    let mut deepest = 0;
    let mut keys = 0;
    let mut stack = vec![(value, 1_usize)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                deepest = deepest.max(depth);
                keys += map.len();
                stack.extend(map.values().map(|v| (v, depth + 1)));
            }
            serde_json::Value::Array(items) => {
                deepest = deepest.max(depth);
                stack.extend(items.iter().map(|v| (v, depth + 1)));
            }
            _ => deepest = deepest.max(depth.saturating_sub(1)),
        }
    }
    (deepest, keys)
}

/// A catalogue version tag: 1–100 of `[A-Za-z0-9._-]`.
pub fn tag(value: &str) -> Result<()> {
    key_token("version", value, SLUG_MAX)
}

/// `first`/`last` within 0 and the largest page size, not both; returns the page size
/// and whether it counts from the end.
pub fn page_size(first: Option<i32>, last: Option<i32>, sizes: PageSizes) -> Result<(usize, bool)> {
    let check = |arg: &str, n: i32| match u32::try_from(n) {
        Ok(n) if n <= sizes.max => Ok(n as usize),
        _ => Err(invalid(format!(
            "{arg} {n} must be between 0 and {}",
            sizes.max
        ))),
    };
    match (first, last) {
        (Some(_), Some(_)) => Err(invalid("first and last cannot be used together".to_owned())),
        (Some(n), None) => Ok((check("first", n)?, false)),
        (None, Some(n)) => Ok((check("last", n)?, true)),
        (None, None) => Ok((sizes.default.min(sizes.max) as usize, false)),
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use serde_json::json;

    use super::*;

    fn message<T: std::fmt::Debug>(result: Result<T>) -> String {
        match result {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn skus_and_tags_use_the_key_alphabet() {
        assert!(sku("ABC-1.x_2").is_ok());
        assert!(sku(&"a".repeat(SKU_MAX)).is_ok());
        assert!(message(sku(&"a".repeat(SKU_MAX + 1))).contains("1-64"));
        assert!(message(sku("")).starts_with("sku \"\""));
        assert!(message(sku("a b")).contains("\"a b\""));
        assert!(sku("é").is_err());
        assert!(tag("v1.2.0").is_ok());
        assert!(message(tag("v 1")).starts_with("version"));
    }

    #[test]
    fn names_count_characters_and_refuse_blank() {
        assert!(name("title", &"é".repeat(NAME_MAX)).is_ok());
        assert!(name("title", &"é".repeat(NAME_MAX + 1)).is_err());
        assert!(message(name("name", "   ")).starts_with("name \"   \""));
    }

    #[test]
    fn slugs_are_hyphenated_lower_case_words() {
        for ok in ["a", "shoes", "summer-2024", "a-b-c"] {
            assert!(slug(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a--b", "A", "a_b", "ä"] {
            assert!(slug(bad).is_err(), "{bad}");
        }
        assert!(slug(&"a".repeat(SLUG_MAX + 1)).is_err());
    }

    #[test]
    fn prices_are_non_negative_with_eight_decimals_at_most() {
        let d = |s: &str| Decimal::from_str(s).expect("decimal");
        assert!(price(d("0")).is_ok());
        assert!(price(d("-0.00")).is_ok());
        assert!(price(d("9.12345678")).is_ok());
        assert!(message(price(d("-1"))).contains("negative"));
        assert!(message(price(d("1.123456789"))).contains("fractional"));
    }

    #[test]
    fn currency_quantity_images_body() {
        assert!(currency("EUR").is_ok());
        assert!(currency("eur").is_err());
        assert!(currency("EURO").is_err());
        assert!(quantity(None).is_ok());
        assert!(quantity(Some(0)).is_ok());
        assert!(message(quantity(Some(-1))).contains("-1"));
        assert!(images(&vec!["https://x/a.png".to_owned(); IMAGES_MAX]).is_ok());
        assert!(images(&["http://cdn.example/a b.png".to_owned()]).is_err());
        for bad in [
            "javascript:alert(1)",
            "data:image/png;base64,AAAA",
            "ftp://x/a.png",
            "/a.png",
            "https://",
        ] {
            let m = message(images(&[bad.to_owned()]));
            assert!(m.contains("http or https"), "{bad}: {m}");
        }
        assert!(images(&vec!["https://x/a.png".to_owned(); IMAGES_MAX + 1]).is_err());
        assert!(images(&[" ".to_owned()]).is_err());
        assert!(images(&["h".repeat(IMAGE_LEN_MAX + 1)]).is_err());
        assert!(body(Some(&"b".repeat(BLOB_MAX))).is_ok());
        assert!(body(Some(&"b".repeat(BLOB_MAX + 1))).is_err());
    }

    #[test]
    fn metadata_is_a_bounded_object() {
        assert!(metadata(None).is_ok());
        assert!(metadata(Some(&json!({"a": [1, 2]}))).is_ok());
        assert!(message(metadata(Some(&json!([1])))).contains("JSON object"));
        let big = json!({ "k": "v".repeat(BLOB_MAX) });
        assert!(message(metadata(Some(&big))).contains("bytes"));
        let nest = |levels: usize| {
            let mut v = json!(1);
            for _ in 0..levels {
                v = json!({ "a": v });
            }
            v
        };
        assert!(metadata(Some(&nest(METADATA_DEPTH_MAX))).is_ok());
        assert!(message(metadata(Some(&nest(METADATA_DEPTH_MAX + 1)))).contains("33 levels"));
        assert!(metadata(Some(&nest(200))).is_err());
        let mut arrays = json!([]);
        for _ in 0..40 {
            arrays = json!([arrays]);
        }
        assert!(metadata(Some(&json!({ "a": arrays }))).is_err());
        let many: serde_json::Map<String, serde_json::Value> = (0..=METADATA_KEYS_MAX)
            .map(|i| (format!("k{i}"), json!(i)))
            .collect();
        assert!(message(metadata(Some(&serde_json::Value::Object(many)))).contains("keys"));
    }

    #[test]
    fn page_sizes() {
        let sizes = PageSizes::default();
        assert_eq!(page_size(None, None, sizes).expect("default"), (100, false));
        assert_eq!(page_size(Some(0), None, sizes).expect("zero"), (0, false));
        assert_eq!(
            page_size(None, Some(1000), sizes).expect("max"),
            (1000, true)
        );
        assert!(message(page_size(Some(1), Some(1), sizes)).contains("together"));
        assert!(message(page_size(Some(-1), None, sizes)).contains("first -1"));
        assert!(message(page_size(None, Some(1001), sizes)).contains("last 1001"));
        let small = PageSizes {
            default: 5,
            max: 10,
        };
        assert_eq!(
            page_size(None, None, small).expect("configured"),
            (5, false)
        );
        assert!(message(page_size(Some(11), None, small)).contains("between 0 and 10"));
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let long = "x".repeat(500);
        let shown = shown(&long);
        assert!(shown.len() < 100 && shown.ends_with('…'), "{shown}");
        assert_eq!(super::shown("abc"), "\"abc\"");
    }
}
