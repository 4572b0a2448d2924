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
/// Largest body or metadata, in bytes.
pub const BLOB_MAX: usize = 64 * 1024;
/// Most fractional digits of a price.
pub const PRICE_SCALE_MAX: u32 = 8;
/// Largest page size.
pub const PAGE_MAX: i32 = 100;
/// Page size when neither `first` nor `last` is given.
pub const PAGE_DEFAULT: i32 = 20;

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

/// At most 50 images of at most 2048 characters, none empty.
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

/// A JSON object of at most 64 KiB serialised.
pub fn metadata(value: Option<&serde_json::Value>) -> Result<()> {
    let Some(value) = value else { return Ok(()) };
    if !value.is_object() {
        return Err(invalid(format!(
            "metadata must be a JSON object, got {}",
            shown(&value.to_string())
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

/// A catalogue version tag: 1–100 of `[A-Za-z0-9._-]`.
pub fn tag(value: &str) -> Result<()> {
    key_token("version", value, SLUG_MAX)
}

/// `first`/`last` within 0–100, not both; returns the page size and whether it counts
/// from the end.
pub fn page_size(first: Option<i32>, last: Option<i32>) -> Result<(usize, bool)> {
    let check = |arg: &str, n: i32| {
        if (0..=PAGE_MAX).contains(&n) {
            Ok(usize::try_from(n).unwrap_or_default())
        } else {
            Err(invalid(format!(
                "{arg} {n} must be between 0 and {PAGE_MAX}"
            )))
        }
    };
    match (first, last) {
        (Some(_), Some(_)) => Err(invalid("first and last cannot be used together".to_owned())),
        (Some(n), None) => Ok((check("first", n)?, false)),
        (None, Some(n)) => Ok((check("last", n)?, true)),
        (None, None) => Ok((check("first", PAGE_DEFAULT)?, false)),
    }
}
