//! Idempotent acceptance: a client retrying an async request with the same `Idempotency-Key`
//! (and the same routing key) gets the original delivery back instead of a second one.

use test_support::{EchoCell, Gateway, RedisServer};

use crate::support::{bin, client, config, live, send_async, serial};

#[test]
fn a_repeated_idempotency_key_gets_the_original_delivery() {
    let _serial = serial();
    let redis = RedisServer::start();
    let cell = EchoCell::start(bin(), "cell-1");
    // No workers: the entries stay put, so the count below is what was stored.
    let gateway = Gateway::start(bin(), &config(&redis, &[&cell], "500ms", "workers = 0"));
    let http = client();

    let first = send_async(&http, &gateway, "alice", Some("order-1"), "{\"n\":1}").unwrap();
    assert_eq!(first.status, 202, "{}", first.body);
    let id = first.id.clone().unwrap();
    assert_eq!(
        first.location.as_deref(),
        Some(format!("/_cellgate/deliveries/{id}").as_str())
    );

    // Same routing key, same Idempotency-Key (even with another body): the same delivery.
    let again = send_async(&http, &gateway, "alice", Some("order-1"), "{\"n\":2}").unwrap();
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(again.id.as_deref(), Some(id.as_str()));
    assert_eq!(again.location, first.location);
    assert_eq!(again.body["state"], "pending");

    // Another routing key with the same Idempotency-Key is another client's request.
    let other = send_async(&http, &gateway, "bob", Some("order-1"), "{\"n\":1}").unwrap();
    assert_eq!(other.status, 202, "{}", other.body);
    let other_id = other.id.unwrap();
    assert_ne!(other_id, id);
    assert_ne!(other.location, first.location);

    // Without an Idempotency-Key every request is a new delivery.
    let plain: Vec<String> = (0..2)
        .map(|_| {
            send_async(&http, &gateway, "alice", None, "{}")
                .unwrap()
                .id
                .unwrap()
        })
        .collect();
    assert_ne!(plain[0], plain[1]);
    assert!(!plain.contains(&id) && !plain.contains(&other_id));

    assert_eq!(live(&redis, &["cell-1"]), 4, "alice/order-1 stored once");
}
