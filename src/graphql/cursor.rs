//! Relay cursors: the opaque form of a keyset position `(createdAt, id)`.
//!
//! A cursor is the hex of `"<createdAt millis>|<id>"`: opaque to clients, stable while
//! rows are added or removed (it names a position, not an offset), and cheap to decode.
//! Only this layer knows cursors; the service pages by [`Key`].

use crate::datastore::{Key, Timestamp};
use crate::service::PageRequest;
use crate::service::validate::shown;

use super::error::coded;

/// Encodes a keyset position as an opaque cursor.
#[must_use]
pub fn encode(key: &Key) -> String {
    hex::encode(format!("{}|{}", key.created_at.millis(), key.id))
}

/// Decodes a cursor made by [`encode`]; `None` when it is not one of ours.
#[must_use]
pub fn decode(cursor: &str) -> Option<Key> {
    let bytes = hex::decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (millis, id) = text.split_once('|')?;
    let millis = millis.parse::<i64>().ok()?;
    Some(Key {
        created_at: Timestamp::from_millis(millis),
        id: id.to_owned(),
    })
}

/// Base64 of `arrayconnection` (15 bytes, so exactly 20 characters): the start of every
/// cursor of the Go gitstore-api, whose cursors are `base64("arrayconnection:<offset>")`.
const GO_CURSOR_PREFIX: &str = "YXJyYXljb25uZWN0aW9u";

/// Whether `cursor` was made by the Go gitstore-api (an offset, not a keyset position).
#[must_use]
pub fn is_go_cursor(cursor: &str) -> bool {
    cursor.starts_with(GO_CURSOR_PREFIX)
}

/// Relay page arguments as a [`PageRequest`].
///
/// # Errors
/// `INVALID_ARGUMENT` naming a cursor that is not one of ours; a cursor of the Go
/// gitstore-api gets a message saying that cursors changed format.
pub fn page_request(
    first: Option<i32>,
    after: Option<&str>,
    last: Option<i32>,
    before: Option<&str>,
) -> async_graphql::Result<PageRequest> {
    let key = |cursor: Option<&str>| {
        cursor
            .map(|c| {
                decode(c).ok_or_else(|| {
                    let message = if is_go_cursor(c) {
                        format!(
                            "cursor {} is an offset cursor of the Go gitstore-api; cursors \
                             changed format (they now name a position, not an offset): \
                             request the first page without after/before and use the \
                             cursors this server returns",
                            shown(c)
                        )
                    } else {
                        format!("cursor {} is not valid", shown(c))
                    };
                    coded("INVALID_ARGUMENT", message)
                })
            })
            .transpose()
    };
    Ok(PageRequest {
        first,
        last,
        after: key(after)?,
        before: key(before)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let key = Key {
            created_at: Timestamp::from_millis(1_700_000_000_123),
            id: "prod_01HZX".to_owned(),
        };
        let cursor = encode(&key);
        assert!(cursor.bytes().all(|b| b.is_ascii_hexdigit()), "{cursor}");
        assert_eq!(decode(&cursor), Some(key));
    }

    #[test]
    fn ids_with_the_separator_survive() {
        let key = Key {
            created_at: Timestamp::from_millis(-5),
            id: "a|b".to_owned(),
        };
        assert_eq!(decode(&encode(&key)), Some(key));
    }

    #[test]
    fn foreign_cursors_are_refused() {
        for bad in [
            "",
            "zzz",
            "abc",
            &hex::encode("no-separator"),
            &hex::encode("x|id"),
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        // The Go service's cursors: base64 of "arrayconnection:N".
        assert_eq!(decode("YXJyYXljb25uZWN0aW9uOjE="), None);
        assert_eq!(decode(&hex::encode([0xff, 0xfe])), None);
    }

    #[test]
    fn page_request_names_the_bad_cursor() {
        let err = page_request(Some(2), Some("zzz"), None, None).expect_err("bad cursor");
        assert_eq!(err.message, "cursor \"zzz\" is not valid");
        let err = page_request(None, None, None, Some("YXJyYXljb25uZWN0aW9uOjE="))
            .expect_err("go cursor");
        assert!(
            err.message
                .starts_with("cursor \"YXJyYXljb25uZWN0aW9uOjE=\" is an offset cursor of the Go"),
            "{}",
            err.message
        );
        assert!(err.message.contains("changed format"), "{}", err.message);
        let ok = page_request(None, None, Some(3), None).expect("valid");
        assert_eq!(
            (ok.first, ok.last, ok.after, ok.before),
            (None, Some(3), None, None)
        );
    }
}
