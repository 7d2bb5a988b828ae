//! A connector served over HTTP next to a simulated Document Server, with helpers that act
//! as the browser (open a session) and as Document Server (download, save callbacks).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use eurooffice_connector::library::{bytes_stream, import};
use eurooffice_connector::model::VersionState;
use eurooffice_connector::protocol::identity::User;
use eurooffice_connector::{App, Config};
use http::StatusCode;
use serde_json::{Value, json};

use crate::docserver::{DocServerSim, serve_connector};
use crate::{DOCSERVER_SECRET, TestEnv};

pub struct Rig {
    pub app: App,
    pub sim: DocServerSim,
    pub base: String,
    pub client: reqwest::Client,
    pub env: TestEnv,
}

pub async fn rig_with(env: TestEnv, tweak: impl FnOnce(&mut Config)) -> Rig {
    let sim = DocServerSim::start(DOCSERVER_SECRET).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = env.app.config.clone();
    config.eurooffice_callback_url = Some(base.clone());
    config.eurooffice_internal_url = sim.internal_url();
    tweak(&mut config);
    let app = App::from_config(config).await.unwrap();
    serve_connector(listener, app.clone()).await;
    Rig {
        app,
        sim,
        base,
        client: reqwest::Client::new(),
        env,
    }
}

pub async fn rig(env: TestEnv) -> Rig {
    rig_with(env, |_| {}).await
}

impl Rig {
    pub fn token(&self, user: &str) -> String {
        self.app
            .users
            .mint(
                &User {
                    id: user.into(),
                    name: format!("{user} name"),
                },
                3600,
            )
            .unwrap()
    }

    pub async fn import(&self, title: &str, bytes: &[u8]) -> String {
        import(
            &self.app,
            "alice",
            title,
            bytes_stream(Bytes::copy_from_slice(bytes)),
        )
        .await
        .unwrap()
        .file_id
    }

    pub async fn open(&self, user: &str, file_id: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/api/eurooffice/session", self.base))
            .bearer_auth(self.token(user))
            .json(&json!({"file_id": file_id}))
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.json().await.unwrap())
    }

    pub async fn opened(&self, user: &str, file_id: &str) -> Value {
        let (status, body) = self.open(user, file_id).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn versions(&self, file_id: &str) -> Vec<(u32, VersionState, String)> {
        self.app
            .catalog
            .versions(file_id)
            .await
            .unwrap()
            .into_iter()
            .map(|v| (v.number, v.state, v.format))
            .collect()
    }

    pub async fn export(&self, file_id: &str, number: u32) -> Vec<u8> {
        let (_, stream) =
            eurooffice_connector::library::open_version(&self.app, file_id, Some(number))
                .await
                .unwrap();
        eurooffice_connector::storage::objects::collect_stream(stream, u64::MAX)
            .await
            .unwrap()
            .to_vec()
    }

    pub async fn save(
        &self,
        opened: &Value,
        status: u8,
        bytes: &[u8],
        ext: &str,
        lastsave: &str,
    ) -> (StatusCode, Value) {
        let url = self.sim.publish(Bytes::copy_from_slice(bytes), ext);
        let body = json!({
            "key": opened["config"]["document"]["key"],
            "status": status,
            "url": url,
            "changesurl": self.sim.publish(Bytes::from_static(b"PK changes zip"), "zip"),
            "history": {"serverVersion": "9.0.0", "changes": [{"created": "2026-12-04 10:00:00", "user": {"id": "alice", "name": "Alice"}}]},
            "filetype": ext,
            "lastsave": lastsave,
            "users": ["alice"],
            "actions": [{"type": 2, "userid": "alice"}],
            "forcesavetype": 1,
        });
        self.callback(opened, body).await
    }

    pub async fn callback(&self, opened: &Value, body: Value) -> (StatusCode, Value) {
        let url = opened["config"]["editorConfig"]["callbackUrl"]
            .as_str()
            .unwrap();
        self.sim.callback(url, body).await
    }

    pub fn assert_public_host_untouched(&self) {
        assert_eq!(
            self.sim.public_hits.load(Ordering::SeqCst),
            0,
            "the host named in callbacks was contacted"
        );
    }
}
