//! Authentication: static and issued tokens, expiry, and the token endpoint's rate limit.

use serde_json::Value;

use crate::support::*;

#[tokio::test]
async fn unauthenticated_wrong_and_expired_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "static-token-1\n").unwrap();
    let clients = dir.path().join("clients");
    std::fs::write(&clients, "spark:s3cret\n").unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef").unwrap();
    let auth = [
        "--auth",
        "token",
        "--tokens-file",
        tokens.to_str().unwrap(),
        "--oauth-clients-file",
        clients.to_str().unwrap(),
        "--token-signing-key-file",
        key.to_str().unwrap(),
        "--token-ttl-secs",
        "1",
    ];
    let mut c = start_with_auth(&auth, &[]).await;
    assert_error(c.get("/v1/config").await, 401, "NotAuthorizedException");
    let challenge = c
        .http
        .get(format!("{}/v1/namespaces", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 401);
    assert_eq!(challenge.headers()["www-authenticate"], "Bearer");
    assert_error(c.get("/v1/namespaces").await, 401, "NotAuthorizedException");
    c.token = Some("wrong".into());
    assert_error(c.get("/v1/namespaces").await, 401, "NotAuthorizedException");
    c.token = Some("static-token-1".into());
    assert_eq!(c.get("/v1/namespaces").await.0, 200);
    c.token = None;
    assert_eq!(c.get("/healthz").await.0, 200, "health needs no token");

    let token_url = format!("{}/v1/oauth/tokens", c.base);
    let bad = c
        .http
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "spark"),
            ("client_secret", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert_eq!(
        bad.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );
    let good: Value = c
        .http
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "spark"),
            ("client_secret", "s3cret"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(good["token_type"], "bearer");
    c.token = Some(good["access_token"].as_str().unwrap().to_string());
    assert_eq!(c.get("/v1/namespaces").await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let expired = c.get("/v1/namespaces").await;
    assert!(
        expired.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{}",
        expired.1
    );
    assert_error(expired, 401, "NotAuthorizedException");
}

#[tokio::test]
async fn the_token_endpoint_is_rate_limited_per_client() {
    let dir = tempfile::tempdir().unwrap();
    let clients = dir.path().join("clients");
    std::fs::write(&clients, "spark:s3cret\ntrino:s3cret2\n").unwrap();
    let auth = [
        "--auth",
        "token",
        "--oauth-clients-file",
        clients.to_str().unwrap(),
    ];
    let c = start_with_auth(&auth, &[]).await;
    let token_url = format!("{}/v1/oauth/tokens", c.base);
    let request = |id: &'static str, secret: &'static str| {
        c.http.post(&token_url).form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
    };
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let resp = request("spark", "guess").send().await.unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 {
            let retry_after: u64 = resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=2).contains(&retry_after), "{retry_after}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"], "temporarily_unavailable", "{body}");
        }
    }
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    assert_eq!(statuses[10], 429, "{statuses:?}");
    // Even the right secret waits now; another client does not.
    assert_eq!(
        request("spark", "s3cret").send().await.unwrap().status(),
        429
    );
    assert_eq!(
        request("trino", "s3cret2").send().await.unwrap().status(),
        200
    );
}
