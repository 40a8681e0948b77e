//! The SPEC §3 example and the files shipped in `config/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::config::{
    Config, DeliveryConfig, KeySource, MissingKey, PolicyConfig, PolicyKey, RedisTarget, Upstream,
};

use crate::support::{ORIGIN, env, parse};

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

fn upstream(s: &str) -> Upstream {
    s.parse().unwrap()
}

#[test]
fn spec_example_parses() {
    let config = parse(include_str!("spec_example.toml"));

    let server = &config.server;
    assert_eq!(server.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(server.admin_listen, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(server.admin_token.as_deref(), Some("t0ken"));
    assert_eq!(server.request_timeout, Duration::from_secs(5));
    assert_eq!(server.gateway_id.as_deref(), Some("gw-1"));

    let redis = config.redis.as_ref().unwrap();
    assert_eq!(
        redis.target,
        RedisTarget::Single("redis://127.0.0.1:6379".into())
    );
    assert_eq!(redis.timeout, Duration::from_millis(10));

    assert_eq!(
        config.routing.key,
        [KeySource::Header("x-user-id".parse().unwrap())]
    );
    assert_eq!(config.routing.missing_key, MissingKey::Reject);

    assert_eq!(config.cells.len(), 2);
    let cell1 = &config.cells[0];
    assert_eq!(cell1.name, "cell-1");
    assert_eq!(
        cell1.upstreams,
        [upstream("127.0.0.1:7001"), upstream("127.0.0.1:7002")]
    );
    assert_eq!(cell1.weight, 1.0);
    assert_eq!(cell1.max_in_flight, 512);
    assert_eq!(config.cells[1].name, "cell-2");
    assert_eq!(config.cells[1].upstreams, [upstream("127.0.0.1:7003")]);

    assert_eq!(
        config.delivery,
        Some(DeliveryConfig {
            workers: 16,
            max_attempts: 5,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            max_age: Duration::from_secs(24 * 3600),
            max_pending: 100_000,
            max_body: 1024 * 1024,
            visibility_timeout: Duration::from_secs(30),
            retention: Duration::from_secs(24 * 3600),
            enqueue_timeout: None,
            wait_replicas: 0,
        })
    );

    let ratelimit = config.ratelimit.as_ref().unwrap();
    assert_eq!(ratelimit.sync_interval, Duration::from_millis(100));
    assert_eq!(ratelimit.max_keys, 1_000_000);
    assert_eq!(
        ratelimit.policies,
        [
            PolicyConfig::new("per-user", PolicyKey::User, 100, Duration::from_secs(1))
                .with_burst(20)
        ]
    );
}

#[test]
fn shipped_example_parses_with_every_section() {
    let path = repo_file("config/cellgate.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = Config::parse(&text, ORIGIN, &env()).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.redis.is_some());
    assert!(config.delivery.is_some());
    assert_eq!(config.cells.len(), 3);
    assert_eq!(config.server.admin_token.as_deref(), Some("t0ken"));
    let policies = &config.ratelimit.as_ref().unwrap().policies;
    assert_eq!(policies.len(), 3);
    assert_eq!(policies[2].key, PolicyKey::Header("x-api-key".into()));
    assert_eq!(policies[1].burst, 1000);
}

#[test]
fn shipped_minimal_config_loads_from_disk() {
    let config = Config::load(&repo_file("config/minimal.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.cells.len(), 2);
    assert!(config.redis.is_none() && config.delivery.is_none() && config.ratelimit.is_none());
}

#[test]
fn load_names_the_file_it_cannot_read() {
    let err = Config::load(Path::new("no/such/cellgate.toml")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no/such/cellgate.toml: cannot read: No such file or directory"
    );
    assert_eq!(err.line, None);
}

#[test]
fn load_reports_lines_with_the_path_as_given() {
    let dir = std::env::temp_dir().join(format!("cellgate-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[server]\nlisten = \"0.0.0.0:8080\"\nbogus = 1\n").unwrap();
    let err = Config::load(&path).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(err.origin, path.display().to_string());
    assert!(
        err.to_string()
            .starts_with(&format!("{}:3: unknown field `bogus`", path.display())),
        "{err}"
    );
}

#[test]
fn shipped_example_spells_out_the_control_defaults() {
    let path = repo_file("config/cellgate.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = Config::parse(&text, ORIGIN, &env()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.control, gateway::config::ControlConfig::default());
}
