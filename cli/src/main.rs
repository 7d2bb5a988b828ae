//! `skye`: run the connector locally and operate its vault.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use eurooffice_connector::config::Backend;
use eurooffice_connector::model::Access;
use eurooffice_connector::protocol::identity::User;
use eurooffice_connector::storage::ByteStream;
use eurooffice_connector::vault::ShardHealth;
use eurooffice_connector::{App, Config, Error, ids, library};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::io::AsyncWriteExt;

#[derive(Parser)]
#[command(
    name = "skye",
    version,
    about = "Euro-Office editing connector for SkyeCONNEX"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every endpoint on one port (embedded defaults unless configured otherwise).
    Serve {
        #[arg(long, default_value = "127.0.0.1:5000")]
        listen: SocketAddr,
    },
    /// Store a document; prints its file id.
    Import {
        path: PathBuf,
        #[arg(long, default_value = "local-user")]
        owner: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write a version (the current one by default) to a file.
    Export {
        file_id: String,
        #[arg(long)]
        version: Option<u32>,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// List stored documents.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// List every version of a document.
    Versions {
        file_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Verify every shard (of one document, or of all); --gc also removes unreferenced shards.
    Scrub {
        file_id: Option<String>,
        #[arg(long)]
        gc: bool,
        /// Leave unreferenced shards younger than this alone (a put may still be writing them).
        #[arg(long, default_value_t = 86_400)]
        gc_margin_secs: u64,
    },
    /// Rebuild missing or corrupt shards onto healthy providers.
    Repair { file_id: Option<String> },
    /// Let a user open a document (edit, or view with --view).
    Share {
        file_id: String,
        user: String,
        #[arg(long)]
        view: bool,
    },
    /// Take a user's access away.
    Unshare { file_id: String, user: String },
    /// Mint a user token (HS256 with SKYE_USER_JWT_SECRET) for the editor page or the API.
    Token {
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value_t = 86_400)]
        ttl_secs: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,aws_config=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("skye: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    let mut config = Config::from_env()?;
    if let Command::Serve { listen } = &cli.command
        && config.backend == Backend::Local
        && config.eurooffice_callback_url.is_none()
    {
        config.eurooffice_callback_url = Some(format!("http://{listen}"));
    }
    let app = App::from_config(config).await?;
    match cli.command {
        Command::Serve { listen } => serve(app, listen).await,
        Command::Import {
            path,
            owner,
            name,
            json,
        } => import(&app, path, owner, name, json).await,
        Command::Export {
            file_id,
            version,
            output,
        } => export(&app, &file_id, version, output).await,
        Command::Ls { json } => ls(&app, json).await,
        Command::Versions { file_id, json } => versions(&app, &file_id, json).await,
        Command::Scrub {
            file_id,
            gc,
            gc_margin_secs,
        } => scrub(&app, file_id, gc, gc_margin_secs).await,
        Command::Repair { file_id } => repair(&app, file_id).await,
        Command::Share {
            file_id,
            user,
            view,
        } => {
            library::share(
                &app,
                &file_id,
                &user,
                Some(if view { Access::View } else { Access::Edit }),
            )
            .await?;
            println!(
                "{user} may now {} {file_id}",
                if view { "view" } else { "edit" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Unshare { file_id, user } => {
            library::share(&app, &file_id, &user, None).await?;
            println!("{user} no longer has access to {file_id}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            user,
            name,
            ttl_secs,
        } => {
            let name = name.unwrap_or_else(|| user.clone());
            println!("{}", app.users.mint(&User { id: user, name }, ttl_secs)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(app: App, listen: SocketAddr) -> Result<ExitCode, Error> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {listen}: {e}")))?;
    let config = &app.config;
    eprintln!(
        "skye: serving on http://{listen}  (backend: {:?})",
        config.backend
    );
    if config.backend == Backend::Local {
        let dir = &config.data_dir;
        eprintln!("skye: data in {}", dir.display());
        if config.eurooffice_jwt_secret.is_none() {
            eprintln!(
                "skye: Document Server JWT secret: {} (give Document Server the same value as JWT_SECRET)",
                dir.join(eurooffice_connector::app::local_files::DOCSERVER_SECRET)
                    .display()
            );
        }
        eprintln!("skye: mint a user token with `skye token --user ID --name NAME`");
    }
    eprintln!(
        "skye: Document Server calls back to {}",
        config.callback_base()
    );
    axum::serve(listener, eurooffice_connector::http::router(app.clone()))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| Error::internal(format_args!("server: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

fn progress(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

async fn import(
    app: &App,
    path: PathBuf,
    owner: String,
    name: Option<String>,
    json: bool,
) -> Result<ExitCode, Error> {
    let title = match name {
        Some(n) => n,
        None => path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| {
                Error::BadRequest("give --name: the path has no usable file name".into())
            })?,
    };
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| Error::BadRequest(format!("cannot read {}: {e}", path.display())))?;
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let bar = progress(len, "importing");
    let reader_bar = bar.clone();
    let stream: ByteStream = Box::pin(futures::stream::try_unfold(file, move |mut file| {
        let bar = reader_bar.clone();
        async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 1024 * 1024];
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.truncate(n);
            bar.inc(n as u64);
            Ok(Some((bytes::Bytes::from(buf), file)))
        }
    }));
    let file = library::import(app, &owner, &title, stream).await?;
    bar.finish_and_clear();
    if json {
        println!(
            "{}",
            json!({"file_id": file.file_id, "title": file.title, "owner": file.owner})
        );
    } else {
        println!("{}", file.file_id);
    }
    Ok(ExitCode::SUCCESS)
}

async fn export(
    app: &App,
    file_id: &str,
    version: Option<u32>,
    output: PathBuf,
) -> Result<ExitCode, Error> {
    let (record, mut stream) = library::open_version(app, file_id, version).await?;
    let bar = progress(record.size, "exporting");
    // Write beside the target and rename, so a failed read leaves no half-written document.
    let partial = output.with_extension(format!("partial-{}", ids::random_hex(4)));
    let result: Result<(), Error> = async {
        let mut file = tokio::fs::File::create(&partial).await?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            file.write_all(&chunk).await?;
            bar.inc(chunk.len() as u64);
        }
        file.sync_all().await?;
        tokio::fs::rename(&partial, &output).await?;
        Ok(())
    }
    .await;
    bar.finish_and_clear();
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(e);
    }
    eprintln!(
        "wrote version {} ({} bytes) to {}",
        record.number,
        record.size,
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn ls(app: &App, as_json: bool) -> Result<ExitCode, Error> {
    let files = app.catalog.files().await?;
    if as_json {
        let list: Vec<_> = files
            .iter()
            .map(|f| json!({"file_id": f.file_id, "title": f.title, "owner": f.owner, "version": f.head, "updated": ids::rfc3339(f.updated), "acl": f.acl}))
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        for f in files {
            println!("{}  v{:<3} {:<20} {}", f.file_id, f.head, f.owner, f.title);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn versions(app: &App, file_id: &str, as_json: bool) -> Result<ExitCode, Error> {
    app.catalog
        .file(file_id)
        .await?
        .ok_or(Error::NotFound("file"))?;
    let versions = app.catalog.versions(file_id).await?;
    if as_json {
        let list: Vec<_> = versions
            .iter()
            .map(|v| {
                json!({
                    "number": v.number, "version_id": v.version_id(), "state": v.state, "size": v.size,
                    "format": v.format, "created": ids::rfc3339(v.created), "author": v.author, "origin": v.origin.as_str(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        for v in versions {
            println!(
                "{:>3}  {:<8} {:>10}  {:<5} {}  {:<12} {:<10} {}",
                v.number,
                format!("{:?}", v.state).to_lowercase(),
                v.size,
                v.format,
                ids::rfc3339(v.created),
                v.origin.as_str(),
                v.author,
                v.version_id()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn selected_files(app: &App, file_id: Option<String>) -> Result<Vec<String>, Error> {
    Ok(match file_id {
        Some(id) => {
            app.catalog
                .file(&id)
                .await?
                .ok_or(Error::NotFound("file"))?;
            vec![id]
        }
        None => app
            .catalog
            .files()
            .await?
            .into_iter()
            .map(|f| f.file_id)
            .collect(),
    })
}

async fn scrub(
    app: &App,
    file_id: Option<String>,
    gc: bool,
    margin: u64,
) -> Result<ExitCode, Error> {
    let mut damaged_versions = 0;
    for id in selected_files(app, file_id).await? {
        for version in app.catalog.versions(&id).await? {
            for (what, manifest) in std::iter::once(("document", &version.manifest))
                .chain(version.changes.as_ref().map(|c| ("changes", c)))
            {
                let report = app.vault.scrub(manifest).await?;
                let damaged = report.damaged();
                if damaged == 0 {
                    println!("{id} v{} {what}: ok", version.number);
                    continue;
                }
                damaged_versions += 1;
                let detail: Vec<String> = report
                    .shards
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| **h != ShardHealth::Ok)
                    .map(|(i, h)| format!("shard {i} on {}: {h:?}", manifest.shards[i].provider))
                    .collect();
                let verdict = if damaged > manifest.parity_shards as usize {
                    "UNRECOVERABLE"
                } else {
                    "repairable"
                };
                println!(
                    "{id} v{} {what}: {damaged} damaged ({verdict}): {}",
                    version.number,
                    detail.join("; ")
                );
            }
        }
    }
    if gc {
        let referenced = library::referenced_shards(app).await?;
        let removed = app
            .vault
            .gc(&referenced, Duration::from_secs(margin))
            .await?;
        println!("gc: removed {removed} unreferenced shard objects");
    }
    Ok(if damaged_versions == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

async fn repair(app: &App, file_id: Option<String>) -> Result<ExitCode, Error> {
    let mut failed = 0;
    for id in selected_files(app, file_id).await? {
        for line in library::repair_file(app, &id).await? {
            let (number, what) = (line.number, line.object);
            match line.outcome {
                Ok(true) => println!("{id} v{number} {what}: repaired"),
                Ok(false) => println!("{id} v{number} {what}: ok"),
                Err(e) => {
                    failed += 1;
                    println!("{id} v{number} {what}: cannot repair: {e}");
                }
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
