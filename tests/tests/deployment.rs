//! The deployment contract: the SAM template matches the code (functions, routes, settings,
//! least privilege), and each function answers the API Gateway / function-URL events in
//! `events/` as deployed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use eurooffice_connector::http::{Endpoint, routes};
use eurooffice_connector::protocol::jwt;
use eurooffice_connector::{App, Config};
use serde_json::{Value as Json, json};
use serde_yaml::Value;
use skye_integration_tests::{Backend, DOCSERVER_SECRET, env};
use tower::ServiceExt;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn template() -> Value {
    let text = std::fs::read_to_string(root().join("template.yaml")).expect("template.yaml");
    serde_yaml::from_str(&text).expect("template parses")
}

fn endpoint_of(binary: &str) -> Endpoint {
    match binary {
        "create-session" => Endpoint::CreateSession,
        "serve-file" => Endpoint::ServeFile,
        "callback" => Endpoint::Callback,
        "editor-page" => Endpoint::EditorPage,
        "health" => Endpoint::Health,
        other => panic!("functions/{other} has no endpoint"),
    }
}

fn method_of(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::CreateSession | Endpoint::Callback => "POST",
        _ => "GET",
    }
}

/// (logical id, resource) of every function in the template.
fn functions(t: &Value) -> Vec<(String, Value)> {
    t["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(k, r)| (k.as_str().unwrap_or_default().to_string(), r.clone()))
        .collect()
}

#[test]
fn every_function_crate_is_deployed_with_a_route_or_url() {
    let t = template();
    let deployed = functions(&t);
    let crates: Vec<String> = std::fs::read_dir(root().join("functions"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(crates.len(), 5);
    for name in &crates {
        let (id, f) = deployed
            .iter()
            .find(|(_, f)| f["Metadata"]["BuildProperties"]["Binary"] == name.as_str())
            .unwrap_or_else(|| panic!("functions/{name} has no function in template.yaml"));
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda", "{id}");
        assert_eq!(f["Properties"]["Runtime"], "provided.al2023", "{id}");
        assert_eq!(f["Properties"]["Handler"], "bootstrap", "{id}");
        assert_eq!(f["Properties"]["Architectures"][0], "arm64", "{id}");
        let endpoint = endpoint_of(name);
        let routes: Vec<(String, String)> = f["Properties"]["Events"]
            .as_mapping()
            .map(|events| {
                events
                    .values()
                    .filter(|e| e["Type"] == "HttpApi")
                    .map(|e| {
                        let p = &e["Properties"];
                        (
                            p["Method"].as_str().unwrap().to_uppercase(),
                            p["Path"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let url = &f["Properties"]["FunctionUrlConfig"];
        match endpoint {
            // Document Server's endpoints need more than 30 s or streaming: function URLs.
            Endpoint::ServeFile | Endpoint::Callback => {
                assert_eq!(url["AuthType"], "NONE", "{id}");
                assert!(routes.is_empty(), "{id} must not sit behind the HTTP API");
                if endpoint == Endpoint::ServeFile {
                    assert_eq!(url["InvokeMode"], "RESPONSE_STREAM");
                }
            }
            _ => assert_eq!(
                routes,
                vec![(method_of(endpoint).to_string(), endpoint.path().to_string())],
                "{id}"
            ),
        }
    }
}

fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(v);
    match v {
        Value::Mapping(m) => m.values().for_each(|c| walk(c, out)),
        Value::Sequence(s) => s.iter().for_each(|c| walk(c, out)),
        Value::Tagged(t) => walk(&t.value, out),
        _ => {}
    }
}

#[test]
fn no_secret_is_a_plain_environment_value() {
    let t = template();
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    assert!(
        !text.contains("{{resolve:"),
        "no dynamic references into plain values"
    );
    let mut envs = vec![t["Globals"]["Function"]["Environment"]["Variables"].clone()];
    envs.extend(
        functions(&t)
            .into_iter()
            .map(|(_, f)| f["Properties"]["Environment"]["Variables"].clone()),
    );
    for vars in envs.iter().filter_map(Value::as_mapping) {
        for name in vars.keys().filter_map(Value::as_str) {
            if name.contains("SECRET") {
                assert!(
                    name.ends_with("_SECRET_ARN") || name.ends_with("_PARAMETER"),
                    "{name} would hold a secret value"
                );
            }
        }
    }
}

#[test]
fn no_role_policy_grants_star_actions_or_resources() {
    let t = template();
    let mut statements = Vec::new();
    for (id, r) in t["Resources"].as_mapping().unwrap() {
        let policies = match r["Type"].as_str() {
            Some("AWS::IAM::Role") => &r["Properties"]["Policies"],
            Some("AWS::Serverless::Function") => {
                assert!(
                    r["Properties"]["Role"] != Value::Null,
                    "{id:?} uses its own least-privilege role"
                );
                &r["Properties"]["Policies"]
            }
            _ => continue,
        };
        let mut all = Vec::new();
        walk(policies, &mut all);
        for v in all {
            if let Some(m) = v.as_mapping()
                && m.contains_key("Effect")
            {
                statements.push((id.as_str().unwrap_or_default().to_string(), v.clone()));
            }
        }
    }
    assert!(statements.len() >= 10, "role statements found");
    for (id, s) in statements {
        for field in ["Action", "Resource"] {
            let mut values = Vec::new();
            walk(&s[field], &mut values);
            for v in values.into_iter().filter_map(Value::as_str) {
                assert!(
                    v != "*" && !v.ends_with(":*") || field == "Resource" && v.starts_with("arn:"),
                    "{id}: {field} {v}"
                );
            }
        }
        assert!(
            s["NotAction"] == Value::Null && s["NotResource"] == Value::Null,
            "{id}"
        );
    }
}

/// Resolves the intrinsic functions of an environment value with test values; `None` drops it.
fn resolve(v: &Value, params: &HashMap<&str, &str>, condition: bool) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => match t.tag.to_string().as_str() {
            "!Ref" => {
                let name = t.value.as_str()?;
                if name == "AWS::NoValue" {
                    return None;
                }
                Some(
                    params
                        .get(name)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| format!("{name}-physical-name")),
                )
            }
            "!GetAtt" => {
                let target = t.value.as_str()?;
                Some(if target.ends_with(".FunctionUrl") {
                    format!(
                        "https://{}.lambda-url.us-east-1.on.aws/",
                        target.split('.').next()?.to_lowercase()
                    )
                } else {
                    format!("arn:aws:kms:us-east-1:123456789012:key/{}", target.len())
                })
            }
            "!If" => {
                let branches = t.value.as_sequence()?;
                resolve(&branches[if condition { 1 } else { 2 }], params, condition)
            }
            "!Sub" => Some(t.value.as_str()?.to_string()),
            other => panic!("unhandled intrinsic {other} in an environment value"),
        },
        _ => None,
    }
}

#[test]
fn every_function_environment_is_a_valid_configuration() {
    let t = template();
    let providers = r#"[{"id":"p1","kind":"s3","bucket":"skye-shards-1"},{"id":"p2","kind":"s3","bucket":"skye-shards-2"},{"id":"p3","kind":"s3","bucket":"skye-shards-3"}]"#;
    let params: HashMap<&str, &str> = HashMap::from([
        ("EuroOfficeUrl", "https://docs.example.com"),
        ("EuroOfficeInternalUrl", "http://documentserver.internal"),
        (
            "EuroOfficeJwtSecretArn",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:ds-AbCdEf",
        ),
        (
            "UserJwtSecretArn",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:user-AbCdEf",
        ),
        (
            "UserJwksUrl",
            "https://idp.example.com/.well-known/jwks.json",
        ),
        ("Providers", providers),
        ("RsDataShards", "4"),
        ("RsParityShards", "2"),
    ]);
    for condition in [true, false] {
        for (id, f) in functions(&t) {
            let mut vars: HashMap<String, String> =
                HashMap::from([("AWS_LAMBDA_FUNCTION_NAME".into(), id.clone())]);
            for source in [
                &t["Globals"]["Function"]["Environment"]["Variables"],
                &f["Properties"]["Environment"]["Variables"],
            ] {
                for (k, v) in source.as_mapping().into_iter().flatten() {
                    if let Some(value) = resolve(v, &params, condition) {
                        vars.insert(k.as_str().unwrap().to_string(), value);
                    }
                }
            }
            let config = Config::from_vars(&vars).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(
                config.backend,
                eurooffice_connector::config::Backend::Aws,
                "{id}"
            );
            if id == "CreateSessionFunction" {
                assert!(
                    config
                        .file_base()
                        .starts_with("https://servefilefunctionurl"),
                    "{id}: {}",
                    config.file_base()
                );
                assert!(
                    config
                        .callback_base()
                        .starts_with("https://callbackfunctionurl"),
                    "{id}"
                );
            }
        }
    }
}

// ------------------------------------------------------------------ event fixtures

struct Fixtures {
    app: App,
    _env: skye_integration_tests::TestEnv,
    file_id: String,
    session_id: String,
    key: String,
    document_url: String,
}

async fn fixtures() -> Fixtures {
    let env = env(Backend::Embedded).await.expect("embedded");
    let app = env.app.clone();
    let file = eurooffice_connector::library::import(
        &app,
        "alice",
        "report.docx",
        eurooffice_connector::library::bytes_stream(bytes::Bytes::from_static(b"docx bytes")),
    )
    .await
    .unwrap();
    // Open a session through the create-session event, as API Gateway would deliver it.
    let (status, body) = invoke(
        &app,
        Endpoint::CreateSession,
        &event("create-session.json", &file.file_id, ""),
    )
    .await;
    assert_eq!(status, 200, "{body:?}");
    let opened: Json = serde_json::from_slice(&body).unwrap();
    Fixtures {
        file_id: file.file_id,
        session_id: opened["session_id"].as_str().unwrap().into(),
        key: opened["config"]["document"]["key"].as_str().unwrap().into(),
        document_url: opened["config"]["document"]["url"].as_str().unwrap().into(),
        app,
        _env: env,
    }
}

fn event(name: &str, file_id: &str, session_id: &str) -> Json {
    let text = std::fs::read_to_string(root().join("events").join(name)).expect(name);
    let text = text
        .replace("FILE_ID", file_id)
        .replace("SESSION_ID", session_id);
    serde_json::from_str(&text).expect("event JSON")
}

/// Runs one function's router on an event, exactly as `lambda_http` hands it over.
async fn invoke(app: &App, endpoint: Endpoint, event: &Json) -> (u16, bytes::Bytes) {
    let request = lambda_http::request::from_str(&event.to_string()).expect("event converts");
    let request = request.map(|body| axum::body::Body::from(body.to_vec()));
    let response = routes(app.clone(), &[endpoint])
        .oneshot(request)
        .await
        .expect("router answers");
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, body)
}

#[tokio::test]
async fn create_session_events() {
    let f = fixtures().await;
    // authorizer claims identify the user, even with an unverifiable bearer header present
    let (status, body) = invoke(
        &f.app,
        Endpoint::CreateSession,
        &event("create-session.json", &f.file_id, ""),
    )
    .await;
    assert_eq!(status, 200);
    let opened: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        opened["config"]["editorConfig"]["user"],
        json!({"id": "alice", "name": "Alice Example"})
    );
    assert_eq!(
        opened["session_id"],
        f.session_id.as_str(),
        "same session for the same file"
    );
    // base64-encoded body (the fixture encodes a placeholder id: encode the real one)
    let mut encoded = event("create-session-base64.json", &f.file_id, "");
    assert_eq!(encoded["isBase64Encoded"], true);
    encoded["body"] = json!(eurooffice_connector::ids::b64(
        json!({"file_id": f.file_id}).to_string().as_bytes()
    ));
    let (status, _) = invoke(&f.app, Endpoint::CreateSession, &encoded).await;
    assert_eq!(status, 200);
    // no authorizer and no token: 401 with a JSON error body
    let mut anonymous = event("create-session.json", &f.file_id, "");
    anonymous["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    anonymous["headers"]
        .as_object_mut()
        .unwrap()
        .remove("authorization");
    let (status, body) = invoke(&f.app, Endpoint::CreateSession, &anonymous).await;
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_slice::<Json>(&body).unwrap()["error"],
        "unauthenticated"
    );
    // extra headers change nothing
    let mut extra = event("create-session.json", &f.file_id, "");
    extra["headers"]["x-something-else"] = json!("1");
    extra["headers"]["cookie"] = json!("unrelated=1");
    assert_eq!(invoke(&f.app, Endpoint::CreateSession, &extra).await.0, 200);
    // wrong method
    let mut get = event("create-session.json", &f.file_id, "");
    get["requestContext"]["http"]["method"] = json!("GET");
    get["routeKey"] = json!("GET /api/eurooffice/session");
    let (status, body) = invoke(&f.app, Endpoint::CreateSession, &get).await;
    assert_eq!(status, 405);
    assert_eq!(
        serde_json::from_slice::<Json>(&body).unwrap()["error"],
        "method_not_allowed"
    );
    // oversized body
    let mut big = event("create-session.json", &f.file_id, "");
    big["body"] = json!(format!("{{\"file_id\":\"{}\"}}", "x".repeat(64 * 1024)));
    assert_eq!(invoke(&f.app, Endpoint::CreateSession, &big).await.0, 413);
    // malformed body and unknown file
    let mut bad = event("create-session.json", &f.file_id, "");
    bad["body"] = json!("{not json");
    assert_eq!(invoke(&f.app, Endpoint::CreateSession, &bad).await.0, 400);
    let (status, _) = invoke(
        &f.app,
        Endpoint::CreateSession,
        &event("create-session.json", "nope", ""),
    )
    .await;
    assert_eq!(status, 404);
    // another function's router does not answer this route
    let (status, _) = invoke(
        &f.app,
        Endpoint::Health,
        &event("create-session.json", &f.file_id, ""),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn editor_page_and_health_events() {
    let f = fixtures().await;
    let (status, body) = invoke(
        &f.app,
        Endpoint::EditorPage,
        &event("editor-page.json", &f.file_id, ""),
    )
    .await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains(&f.file_id));
    let (status, body) = invoke(&f.app, Endpoint::Health, &event("health.json", "", "")).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Json>(&body).unwrap()["status"],
        "ok"
    );
}

#[tokio::test]
async fn serve_file_and_callback_events() {
    let f = fixtures().await;
    let token = jwt::sign(
        DOCSERVER_SECRET,
        &json!({"payload": {"url": f.document_url}}),
        300,
    )
    .unwrap();
    let mut download = event("serve-file.json", "", &f.session_id);
    download["headers"]["authorization"] = json!(format!("Bearer {token}"));
    let (status, body) = invoke(&f.app, Endpoint::ServeFile, &download).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"docx bytes");
    let mut unsigned = event("serve-file.json", "", &f.session_id);
    unsigned["headers"]
        .as_object_mut()
        .unwrap()
        .remove("authorization");
    assert_eq!(invoke(&f.app, Endpoint::ServeFile, &unsigned).await.0, 401);
    let mut post = download.clone();
    post["requestContext"]["http"]["method"] = json!("POST");
    assert_eq!(invoke(&f.app, Endpoint::ServeFile, &post).await.0, 405);

    let mut callback = event("callback.json", "", &f.session_id);
    let mut body: Json = serde_json::from_str(callback["body"].as_str().unwrap()).unwrap();
    body.as_object_mut().unwrap().remove("token");
    body["key"] = json!(f.key);
    let signed = jwt::sign(DOCSERVER_SECRET, &body, 300).unwrap();
    body["token"] = json!(signed);
    callback["body"] = json!(body.to_string());
    callback["headers"]["authorization"] = json!(format!(
        "Bearer {}",
        jwt::sign(DOCSERVER_SECRET, &json!({"payload": body}), 300).unwrap()
    ));
    let (status, reply) = invoke(&f.app, Endpoint::Callback, &callback).await;
    assert_eq!(
        (status, serde_json::from_slice::<Json>(&reply).unwrap()),
        (200, json!({"error": 0}))
    );
    let session = f.app.sessions.get(&f.session_id).await.unwrap().unwrap();
    assert_eq!(session.connected, vec!["alice".to_string()]);
    // the same event with its placeholder tokens is refused
    let (status, reply) = invoke(
        &f.app,
        Endpoint::Callback,
        &event("callback.json", "", &f.session_id),
    )
    .await;
    assert_eq!(
        (status, serde_json::from_slice::<Json>(&reply).unwrap()),
        (401, json!({"error": 1}))
    );
}
