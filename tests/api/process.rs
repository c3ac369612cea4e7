//! The service as a separate process: for tests that kill it or run its command line.

/// The `lathe` binary built for the tests.
fn lathe_binary() -> &'static str {
    env!("CARGO_BIN_EXE_lathe-under-test")
}

/// Runs a `lathe` command against a database and returns its output.
pub fn run_cli(database_url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(lathe_binary())
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("lathe runs")
}

/// The service running as a separate process, killed when dropped.
pub struct ServiceProcess {
    pub child: std::process::Child,
    pub address: String,
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `lathe serve` as its own process against a database and waits until it answers.
pub async fn spawn_process(database_url: &str) -> ServiceProcess {
    spawn_process_with(database_url, &[]).await
}

/// Like [`spawn_process`], with extra environment variables.
pub async fn spawn_process_with(database_url: &str, env: &[(&str, &str)]) -> ServiceProcess {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = std::process::Command::new(lathe_binary())
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .env("LATHE_RATE_LIMIT_PER_MINUTE", "1000000")
        .env("LATHE_SECRET_KEY", lathe_tests::TEST_SECRET_KEY)
        .env("LATHE_AZURE_TIMEOUT_MS", "700")
        .env("LATHE_AZURE_BACKOFF_MS", "50")
        .env("LATHE_AZURE_SERVER_HOSTS", "127.0.0.1")
        .env("LATHE_AZURE_ALLOW_PRIVATE_ADDRESSES", "true")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("lathe starts");
    let process = ServiceProcess {
        child,
        address: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client
            .get(format!("{}/healthz", process.address))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
        {
            return process;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("lathe did not start on port {port}");
}
