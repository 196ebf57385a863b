//! Cross-site publishing and over-broad tokens.

use crate::common::*;
use crate::*;

const BROADCAST: &str = r#"{"broadcast":true,"event":"csrf","data":"="}"#;

/// The reproduction: an admin token in the `rb_token` cookie, a `text/plain` body and a
/// foreign `Origin` (what a `<form enctype="text/plain">` on another site sends) got 202.
#[tokio::test]
async fn an_admin_cookie_cannot_publish_from_another_site() {
    let (nats, bridge) = bridge(|c| c.cors_origins = vec!["https://app.example".into()]).await;
    let (client, mut sub) = subscriber(&nats, "broadcast.>").await;
    let cookie = format!("rb_token={}", token_with("ops", true, &[]));
    let form_body = format!("{BROADCAST}\r\n");
    let (status, body) = post(
        &bridge.base(),
        &[
            ("cookie", cookie.as_str()),
            ("content-type", "text/plain"),
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ],
        &form_body,
    )
    .await;
    assert!(status >= 400, "{status} {body}");
    // Each step alone is refused too: the cookie is not a token here...
    let (status, _) =
        post(&bridge.base(), &[("cookie", cookie.as_str()), ("content-type", "application/json")], BROADCAST).await;
    assert_eq!(status, 401);
    // ...and an admin token in the header has no publish scope.
    let admin = format!("Bearer {}", token_with("ops", true, &[]));
    let (status, body) =
        post(&bridge.base(), &[("authorization", admin.as_str()), ("content-type", "application/json")], BROADCAST)
            .await;
    assert_eq!((status, error_code(&body).as_str()), (403, "forbidden"), "{body}");
    assert!(received_until_sentinel(&client, &mut sub, "broadcast.sentinel").await.is_empty());
}

#[tokio::test]
async fn publish_needs_json_and_an_allowed_origin() {
    let (nats, bridge) = bridge(|c| c.cors_origins = vec!["https://app.example".into()]).await;
    let (client, mut sub) = subscriber(&nats, "broadcast.>").await;
    let auth = format!("Bearer {}", token_with("svc", false, &["publish"]));
    let auth = ("authorization", auth.as_str());
    let json = ("content-type", "application/json");

    let (status, body) = post(&bridge.base(), &[auth, ("content-type", "text/plain")], BROADCAST).await;
    assert_eq!((status, error_code(&body).as_str()), (415, "unsupported_media_type"), "{body}");
    let (status, body) = post(&bridge.base(), &[auth], BROADCAST).await;
    assert_eq!(status, 415, "no content type: {body}");
    let (status, body) = post(&bridge.base(), &[auth, json, ("origin", "https://evil.example")], BROADCAST).await;
    assert_eq!((status, error_code(&body).as_str()), (403, "cross_site"), "{body}");
    let (status, body) = post(&bridge.base(), &[auth, json, ("sec-fetch-site", "cross-site")], BROADCAST).await;
    assert_eq!((status, error_code(&body).as_str()), (403, "cross_site"), "{body}");
    assert!(received_until_sentinel(&client, &mut sub, "broadcast.sentinel").await.is_empty());

    // A service (no Origin) and a listed page may publish.
    let (status, body) =
        post(&bridge.base(), &[auth, ("content-type", "application/json; charset=utf-8")], BROADCAST).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = post(&bridge.base(), &[auth, json, ("origin", "https://app.example")], BROADCAST).await;
    assert_eq!(status, 202, "{body}");
    let got = received_until_sentinel(&client, &mut sub, "broadcast.sentinel").await;
    assert_eq!(got, ["broadcast.csrf", "broadcast.csrf"]);
}

#[tokio::test]
async fn admin_reads_any_stream_and_nothing_else() {
    let (_nats, bridge) = bridge(|_| {}).await;
    let admin = token_with("ops", true, &[]);
    let _s = SseClient::open(&bridge.base(), "42", "", Some(&admin)).await;
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/presence/42", bridge.base()))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Presence from a cookie or the query is not looked at, whatever the token.
    let p = token_with("svc", false, &["presence"]);
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/presence/42", bridge.base()))
        .header("cookie", format!("rb_token={p}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = reqwest::get(format!("{}/v1/presence/42?access_token={p}", bridge.base())).await.unwrap();
    assert_eq!(resp.status(), 401);
}
