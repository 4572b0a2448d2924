//! Token revocations: stored until the token's expiry, idempotent, unknown ids are not
//! revoked, expired revocations no longer count.

use gitstore_api::datastore::{Datastore, Timestamp};

use super::uniq;

fn in_ms(offset: i64) -> Timestamp {
    Timestamp::from_millis(Timestamp::now().millis() + offset)
}

pub async fn token_revocations<D: Datastore>(store: &D) {
    let jti = uniq("jti");
    assert!(!store.is_token_revoked(&jti).await.unwrap());
    store.revoke_token(&jti, in_ms(3_600_000)).await.unwrap();
    assert!(store.is_token_revoked(&jti).await.unwrap());
    // Revoking again (a retried logout) is not an error and keeps it revoked.
    store.revoke_token(&jti, in_ms(3_600_000)).await.unwrap();
    assert!(store.is_token_revoked(&jti).await.unwrap());
    // Another token is untouched.
    assert!(!store.is_token_revoked(&uniq("jti")).await.unwrap());
}

pub async fn expired_revocations_lapse<D: Datastore>(store: &D) {
    // Already expired: the token itself is refused as expired, the revocation need not stay.
    let gone = uniq("jti");
    store.revoke_token(&gone, in_ms(-1_000)).await.unwrap();
    assert!(!store.is_token_revoked(&gone).await.unwrap());
    // Expires shortly: revoked now, not once the expiry has passed.
    let short = uniq("jti");
    store.revoke_token(&short, in_ms(1_500)).await.unwrap();
    assert!(store.is_token_revoked(&short).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(2_600)).await;
    assert!(!store.is_token_revoked(&short).await.unwrap());
    // A later revocation still works after the cleanup it triggers.
    let next = uniq("jti");
    store.revoke_token(&next, in_ms(60_000)).await.unwrap();
    assert!(store.is_token_revoked(&next).await.unwrap());
}
