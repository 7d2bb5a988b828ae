//! The Document Server protocol end to end, over real HTTP, against a simulated Document
//! Server, on the embedded and the emulator backends.

use std::time::Duration;

use bytes::Bytes;
use eurooffice_connector::model::{Access, SessionState, VersionState};
use http::StatusCode;
use serde_json::{Value, json};
use skye_integration_tests::docserver::serve_connector;
use skye_integration_tests::faults::{Fault, wrap_all};
use skye_integration_tests::rig::{Rig, rig, rig_with};
use skye_integration_tests::{
    DOCSERVER_SECRET, TestEnv, on_both_backends, pseudo_random, with_config, with_providers,
};

on_both_backends!(
    force_saves_and_close_make_ordered_versions,
    statuses_without_saves_change_the_right_things,
    co_editors_share_one_session_and_key,
    legacy_formats_come_back_as_ooxml,
    forged_tokens_are_refused_and_change_nothing,
    failed_save_is_staged_and_retried_exactly_once,
    idle_session_still_takes_its_final_save,
    health_and_editor_page_answer,
);

fn ok() -> (StatusCode, Value) {
    (StatusCode::OK, json!({"error": 0}))
}

async fn force_saves_and_close_make_ordered_versions(env: TestEnv) {
    let rig = rig(env).await;
    let docs: Vec<Vec<u8>> = (0..4)
        .map(|i| pseudo_random(300_000 + i * 1000, i as u64))
        .collect();
    let file_id = rig.import("report.docx", &docs[0]).await;
    let opened = rig.opened("alice", &file_id).await;
    let config = &opened["config"];
    assert_eq!(config["documentType"], "word");
    assert_eq!(config["editorConfig"]["mode"], "edit");
    assert_eq!(config["editorConfig"]["customization"]["forcesave"], true);
    assert!(
        opened["api_js_url"]
            .as_str()
            .unwrap()
            .ends_with("/web-apps/apps/api/documents/api.js")
    );
    let key = config["document"]["key"].as_str().unwrap().to_string();
    assert!(eurooffice_connector::protocol::editor::valid_key(&key));
    // The config token signs what Document Server requires.
    let claims = eurooffice_connector::protocol::jwt::verify(
        DOCSERVER_SECRET,
        config["token"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(claims["document"]["key"], key);
    assert_eq!(claims["document"]["url"], config["document"]["url"]);
    assert_eq!(
        claims["editorConfig"]["callbackUrl"],
        config["editorConfig"]["callbackUrl"]
    );
    assert_eq!(
        claims["document"]["permissions"],
        config["document"]["permissions"]
    );

    let (status, bytes) = rig
        .sim
        .download(config["document"]["url"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(bytes == docs[0], "Document Server gets the stored bytes");

    assert_eq!(
        rig.save(&opened, 6, &docs[1], "docx", "2026-12-04T10:00:00Z")
            .await,
        ok()
    );
    assert_eq!(
        rig.save(&opened, 6, &docs[1], "docx", "2026-12-04T10:00:00Z")
            .await,
        ok(),
        "retried force-save"
    );
    assert_eq!(
        rig.versions(&file_id).await.len(),
        2,
        "no duplicate version"
    );
    assert_eq!(
        rig.save(&opened, 6, &docs[2], "docx", "2026-12-04T10:05:00Z")
            .await,
        ok()
    );
    // Co-editors joining after force-saves keep the same key.
    assert_eq!(
        rig.opened("alice", &file_id).await["config"]["document"]["key"],
        key
    );
    assert_eq!(
        rig.save(&opened, 2, &docs[3], "docx", "2026-12-04T10:09:00Z")
            .await,
        ok()
    );
    assert_eq!(
        rig.save(&opened, 2, &docs[3], "docx", "2026-12-04T10:09:00Z")
            .await,
        ok(),
        "retried close"
    );

    let reopened = rig.opened("alice", &file_id).await;
    assert_ne!(reopened["session_id"], opened["session_id"]);
    assert_ne!(
        reopened["config"]["document"]["key"], key,
        "a completed save rotates the key"
    );
    let (_, latest) = rig
        .sim
        .download(reopened["config"]["document"]["url"].as_str().unwrap())
        .await;
    assert!(latest == docs[3]);

    let versions = rig.versions(&file_id).await;
    assert_eq!(
        versions.iter().map(|v| (v.0, v.1)).collect::<Vec<_>>(),
        vec![
            (1, VersionState::Archived),
            (2, VersionState::Archived),
            (3, VersionState::Archived),
            (4, VersionState::Current)
        ]
    );
    for (i, doc) in docs.iter().enumerate() {
        assert!(
            rig.export(&file_id, i as u32 + 1).await == *doc,
            "version {} exports byte-identical",
            i + 1
        );
    }
    let v4 = rig.app.catalog.version(&file_id, 4).await.unwrap().unwrap();
    assert!(
        v4.changes.is_some() && v4.history.is_some(),
        "history kept with the version"
    );
    rig.assert_public_host_untouched();
}

async fn statuses_without_saves_change_the_right_things(env: TestEnv) {
    let rig = rig(env).await;
    let file_id = rig.import("sheet.xlsx", b"xlsx bytes").await;
    let opened = rig.opened("alice", &file_id).await;
    let sid = opened["session_id"].as_str().unwrap().to_string();
    let key = opened["config"]["document"]["key"].clone();
    let status = |s: u8| json!({"key": key, "status": s, "users": ["alice"], "actions": [{"type": 1, "userid": "alice"}]});
    assert_eq!(rig.callback(&opened, status(1)).await, ok());
    assert_eq!(
        rig.app.sessions.get(&sid).await.unwrap().unwrap().connected,
        vec!["alice".to_string()]
    );
    for s in [3, 7] {
        assert_eq!(rig.callback(&opened, status(s)).await, ok());
        let session = rig.app.sessions.get(&sid).await.unwrap().unwrap();
        assert_eq!(
            session.state,
            SessionState::Open,
            "status {s} keeps the session"
        );
        assert!(
            session.last_error.is_some(),
            "status {s} recorded for operators"
        );
    }
    assert_eq!(rig.versions(&file_id).await.len(), 1);
    let mut not_modified = status(2);
    not_modified["notmodified"] = json!(true);
    assert_eq!(rig.callback(&opened, not_modified).await, ok());
    assert_eq!(
        rig.versions(&file_id).await.len(),
        1,
        "notmodified creates no version"
    );
    assert_eq!(
        rig.app.sessions.get(&sid).await.unwrap().unwrap().state,
        SessionState::Closed
    );

    let second = rig.opened("alice", &file_id).await;
    assert_ne!(second["session_id"], opened["session_id"]);
    let mut closed_unchanged = status(4);
    closed_unchanged["key"] = second["config"]["document"]["key"].clone();
    assert_eq!(rig.callback(&second, closed_unchanged).await, ok());
    let s2 = rig
        .app
        .sessions
        .get(second["session_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s2.state, SessionState::Closed);
    assert_eq!(rig.versions(&file_id).await.len(), 1);
    // A save for a session nobody knows: 500 so Document Server keeps the file, and no version.
    let bogus = format!("{}/api/eurooffice/callback/unknown-session", rig.base);
    let body =
        json!({"key": "k", "status": 2, "url": rig.sim.publish(Bytes::from_static(b"x"), "xlsx")});
    let (code, reply) = rig.sim.callback(&bogus, body).await;
    assert_eq!(
        (code, reply),
        (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": 1}))
    );
    rig.assert_public_host_untouched();
}

async fn co_editors_share_one_session_and_key(env: TestEnv) {
    let rig = rig(env).await;
    let file_id = rig.import("deck.pptx", b"pptx").await;
    eurooffice_connector::library::share(&rig.app, &file_id, "bob", Some(Access::Edit))
        .await
        .unwrap();
    eurooffice_connector::library::share(&rig.app, &file_id, "carol", Some(Access::View))
        .await
        .unwrap();
    let alice = rig.opened("alice", &file_id).await;
    let bob = rig.opened("bob", &file_id).await;
    let carol = rig.opened("carol", &file_id).await;
    for other in [&bob, &carol] {
        assert_eq!(other["session_id"], alice["session_id"]);
        assert_eq!(
            other["config"]["document"]["key"],
            alice["config"]["document"]["key"]
        );
    }
    assert_eq!(bob["config"]["editorConfig"]["user"]["id"], "bob");
    assert_eq!(carol["config"]["editorConfig"]["user"]["id"], "carol");
    assert_eq!(
        carol["config"]["editorConfig"]["mode"], "view",
        "view-only ACL forces view"
    );
    assert_eq!(carol["config"]["document"]["permissions"]["edit"], false);
    assert_ne!(bob["config"]["token"], alice["config"]["token"]);

    assert_eq!(rig.save(&alice, 6, b"pptx v2", "pptx", "t1").await, ok());
    let bob_again = rig.opened("bob", &file_id).await;
    assert_eq!(bob_again["session_id"], alice["session_id"]);
    assert_eq!(
        bob_again["config"]["document"]["key"],
        alice["config"]["document"]["key"]
    );

    // No access and no such file look the same.
    let (s1, b1) = rig.open("mallory", &file_id).await;
    let (s2, b2) = rig.open("mallory", "no-such-file").await;
    assert_eq!(s1, StatusCode::NOT_FOUND);
    assert_eq!(
        (s1, &b1),
        (s2, &b2),
        "same answer for no access and no file"
    );
    let session = rig
        .app
        .sessions
        .get(alice["session_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.participants.len(), 3);
}

async fn legacy_formats_come_back_as_ooxml(env: TestEnv) {
    let rig = rig(env).await;
    let file_id = rig.import("legacy.doc", b"old binary word").await;
    let opened = rig.opened("alice", &file_id).await;
    assert_eq!(opened["config"]["document"]["fileType"], "doc");
    assert_eq!(rig.save(&opened, 2, b"new docx", "docx", "t").await, ok());
    let versions = rig.versions(&file_id).await;
    assert_eq!(versions[0].2, "doc");
    assert_eq!(versions[1].2, "docx");
    assert_eq!(
        rig.app.catalog.file(&file_id).await.unwrap().unwrap().title,
        "legacy.docx"
    );
    let reopened = rig.opened("alice", &file_id).await;
    assert_eq!(reopened["config"]["document"]["fileType"], "docx");
    assert_eq!(reopened["config"]["document"]["title"], "legacy.docx");
}

async fn forged_tokens_are_refused_and_change_nothing(env: TestEnv) {
    let rig = rig(env).await;
    let file_id = rig.import("a.docx", b"secret content").await;
    let other_file = rig.import("b.docx", b"other content").await;
    let opened = rig.opened("alice", &file_id).await;
    let other = rig.opened("alice", &other_file).await;
    let url = opened["config"]["document"]["url"].as_str().unwrap();
    let now = eurooffice_connector::ids::now();
    let sign = |secret: &str, claims: Value| {
        eurooffice_connector::protocol::jwt::sign_raw(secret, &claims).unwrap()
    };
    let b64 = |s: &str| eurooffice_connector::protocol::identity::b64url(s.as_bytes());
    let wrong_secret = sign(
        "another-secret-that-is-long-enough-1234",
        json!({"payload": {"url": url}, "exp": now + 300}),
    );
    let expired = sign(
        DOCSERVER_SECRET,
        json!({"payload": {"url": url}, "exp": now - 600}),
    );
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&json!({"payload": {"url": url}, "exp": now + 300}).to_string())
    );
    let for_other = sign(
        DOCSERVER_SECRET,
        json!({"payload": {"url": other["config"]["document"]["url"]}, "exp": now + 300}),
    );
    let hs512 = {
        let key = jsonwebtoken::EncodingKey::from_secret(DOCSERVER_SECRET.as_bytes()).unwrap();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
            &json!({"payload": {"url": url}, "exp": now + 300}),
            &key,
        )
        .unwrap()
    };
    for (what, auth, want) in [
        ("no token", String::new(), StatusCode::UNAUTHORIZED),
        (
            "wrong secret",
            format!("Bearer {wrong_secret}"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "expired",
            format!("Bearer {expired}"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "alg none",
            format!("Bearer {alg_none}"),
            StatusCode::UNAUTHORIZED,
        ),
        ("HS512", format!("Bearer {hs512}"), StatusCode::UNAUTHORIZED),
        (
            "signed for another session",
            format!("Bearer {for_other}"),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let (status, body) = rig.sim.download_with(url, &auth).await;
        assert_eq!(status, want, "file endpoint, {what}");
        assert!(
            !body.windows(14).any(|w| w == b"secret content"),
            "no bytes for {what}"
        );
    }

    let key = opened["config"]["document"]["key"].clone();
    let save_url = rig
        .sim
        .publish(Bytes::from_static(b"forged content"), "docx");
    let body =
        json!({"key": key, "status": 2, "url": save_url, "filetype": "docx", "lastsave": "x"});
    let callback_url = opened["config"]["editorConfig"]["callbackUrl"]
        .as_str()
        .unwrap();
    let mut forged_cases = vec![
        ("no token", body.clone(), None),
        (
            "wrong secret in body",
            with_token(
                &body,
                sign(
                    "another-secret-that-is-long-enough-1234",
                    with_exp(&body, now + 300),
                ),
            ),
            None,
        ),
        (
            "expired body token",
            with_token(&body, sign(DOCSERVER_SECRET, with_exp(&body, now - 600))),
            None,
        ),
        (
            "alg none header",
            body.clone(),
            Some(format!(
                "Bearer {}.{}.",
                b64(r#"{"alg":"none"}"#),
                b64(&json!({"payload": body, "exp": now + 300}).to_string())
            )),
        ),
    ];
    // A valid token for another session's callback cannot close this one.
    let other_key_body = json!({"key": other["config"]["document"]["key"], "status": 4});
    forged_cases.push((
        "other session's key",
        with_token(
            &other_key_body,
            sign(DOCSERVER_SECRET, with_exp(&other_key_body, now + 300)),
        ),
        None,
    ));
    for (what, payload, header) in forged_cases {
        let (status, reply) = rig
            .sim
            .post(callback_url, &payload, header.as_deref())
            .await;
        assert!(status.is_client_error(), "callback, {what}: {status}");
        assert_eq!(reply, json!({"error": 1}), "callback, {what}");
    }
    assert_eq!(rig.versions(&file_id).await.len(), 1, "nothing saved");
    let session = rig
        .app
        .sessions
        .get(opened["session_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.state, SessionState::Open, "nothing closed");
    // Unauthenticated and cross-site session requests.
    let anonymous = rig
        .client
        .post(format!("{}/api/eurooffice/session", rig.base))
        .json(&json!({"file_id": file_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let cross_site = rig
        .client
        .post(format!("{}/api/eurooffice/session", rig.base))
        .header("Cookie", format!("skye_token={}", rig.token("alice")))
        .header("Sec-Fetch-Site", "cross-site")
        .json(&json!({"file_id": file_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status().as_u16(), 403);
    let same_site = rig
        .client
        .post(format!("{}/api/eurooffice/session", rig.base))
        .header("Cookie", format!("skye_token={}", rig.token("alice")))
        .header("Sec-Fetch-Site", "same-origin")
        .json(&json!({"file_id": file_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(same_site.status().as_u16(), 200);
    rig.assert_public_host_untouched();
}

fn with_exp(body: &Value, exp: i64) -> Value {
    let mut claims = body.clone();
    claims["exp"] = json!(exp);
    claims
}

fn with_token(body: &Value, token: String) -> Value {
    let mut out = body.clone();
    out["token"] = Value::String(token);
    out
}

async fn failed_save_is_staged_and_retried_exactly_once(env: TestEnv) {
    let base = rig(env).await;
    let (providers, switches) = wrap_all(base.app.vault.providers());
    let app = with_providers(&base.app, providers);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    // Same stores, faulty providers, served on its own port with its URLs.
    let mut config = app.config.clone();
    config.eurooffice_callback_url = Some(addr.clone());
    let app = with_config(&app, config);
    serve_connector(listener, app.clone()).await;
    let rig = Rig {
        app,
        sim: base.sim,
        base: addr,
        client: base.client,
        env: base.env,
    };

    let original = pseudo_random(2_000_000, 1);
    let edited = pseudo_random(2_100_000, 2);
    let file_id = rig.import("plan.docx", &original).await;
    let opened = rig.opened("alice", &file_id).await;
    let sid = opened["session_id"].as_str().unwrap().to_string();
    switches[0].set(Fault::Fail);
    switches[3].set(Fault::Fail);
    let (status, reply) = rig
        .save(&opened, 2, &edited, "docx", "2026-12-04T11:00:00Z")
        .await;
    assert_eq!(
        (status, reply),
        (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": 1}))
    );
    assert_eq!(rig.versions(&file_id).await.len(), 1, "nothing committed");
    assert!(
        rig.export(&file_id, 1).await == original,
        "previous version current and intact"
    );
    let staged = rig.app.temp.list(&format!("staged/{sid}/")).await.unwrap();
    assert_eq!(
        staged.len(),
        2,
        "staged copy and its description: {staged:?}"
    );
    assert_eq!(
        rig.app.sessions.get(&sid).await.unwrap().unwrap().state,
        SessionState::Open
    );

    // Providers recover; Document Server's cached file is gone by now, so the staged copy is used.
    switches.iter().for_each(|s| s.set(Fault::None));
    let url = rig.sim.publish(Bytes::from_static(b"unused"), "docx");
    rig.sim.forget_all();
    let retry = json!({
        "key": opened["config"]["document"]["key"], "status": 2, "url": url, "filetype": "docx",
        "lastsave": "2026-12-04T11:00:00Z", "users": ["alice"],
    });
    assert_eq!(rig.callback(&opened, retry.clone()).await, ok());
    assert_eq!(
        rig.callback(&opened, retry).await,
        ok(),
        "a second retry creates nothing"
    );
    assert_eq!(
        rig.versions(&file_id).await.len(),
        2,
        "exactly one new version"
    );
    assert!(rig.export(&file_id, 2).await == edited);
    assert!(
        rig.app
            .temp
            .list(&format!("staged/{sid}/"))
            .await
            .unwrap()
            .is_empty(),
        "staged copy removed"
    );
    rig.assert_public_host_untouched();
}

async fn idle_session_still_takes_its_final_save(env: TestEnv) {
    let rig = rig_with(env, |c| c.config_token_ttl_secs = 1).await;
    let file_id = rig.import("notes.odt", b"odt").await;
    let opened = rig.opened("alice", &file_id).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // The editor's config token has expired by now; the final save does not depend on it.
    assert_eq!(rig.save(&opened, 2, b"final odt", "odt", "t").await, ok());
    assert!(rig.export(&file_id, 2).await == b"final odt");
}

async fn health_and_editor_page_answer(env: TestEnv) {
    let rig = rig(env).await;
    let health: Value = rig
        .client
        .get(format!("{}/api/eurooffice/health", rig.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    let names: Vec<&str> = health["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "key_provider",
        "catalog",
        "session_store",
        "temp_store",
        "shard_provider",
    ] {
        assert!(names.contains(&kind), "{kind} listed");
    }
    assert_eq!(names.iter().filter(|k| **k == "shard_provider").count(), 6);
    let page = rig
        .client
        .get(format!("{}/edit/abc_DEF-123", rig.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("/ds/web-apps/apps/api/documents/api.js") && html.contains("abc_DEF-123")
    );
    let bad = rig
        .client
        .get(format!("{}/edit/%3Cscript%3E", rig.base))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 404);
    let wrong_method = rig
        .client
        .delete(format!("{}/api/eurooffice/session", rig.base))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status().as_u16(), 405);
    let body: Value = wrong_method.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
}
