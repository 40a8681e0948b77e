//! What an operator gets by leaving keys out.

use std::time::Duration;

use gateway::config::{DeliveryConfig, RateLimitConfig, RoutingConfig, ServerConfig};

use crate::support::{CELL, parse};

#[test]
fn server_and_cells_only_is_valid_and_everything_else_defaults() {
    let config = parse(&format!("[server]\nlisten = \"0.0.0.0:8080\"\n\n{CELL}"));
    assert_eq!(config.server, ServerConfig::default());
    assert!(config.redis.is_none());
    assert_eq!(config.routing, RoutingConfig::default());
    assert!(config.delivery.is_none());
    assert!(config.ratelimit.is_none());
}

#[test]
fn empty_or_missing_server_table_means_defaults() {
    assert_eq!(
        parse(&format!("[server]\n\n{CELL}")).server,
        ServerConfig::default()
    );
    assert_eq!(parse(CELL).server, ServerConfig::default());
}

#[test]
fn default_values_match_the_contract() {
    let server = ServerConfig::default();
    assert_eq!(server.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(server.admin_listen, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(server.admin_token, None);
    assert_eq!(server.request_timeout, Duration::from_secs(5));
    assert_eq!(server.connect_timeout, Duration::from_secs(1));
    assert_eq!(server.gateway_id, None);
    assert_eq!(server.max_request_body, 64 * 1024 * 1024);
    assert_eq!(server.max_header_bytes, 32 * 1024);
    assert_eq!(server.shutdown_grace, Duration::from_secs(30));
    assert_eq!(server.pool_idle_timeout, Duration::from_secs(90));
    assert_eq!(server.pool_max_idle_per_upstream, 256);

    let routing = RoutingConfig::default();
    assert_eq!(routing.key.len(), 1);
    assert_eq!(routing.key[0].to_string(), "header:x-user-id");
}

#[test]
fn cell_defaults() {
    let cell = &parse(CELL).cells[0];
    assert_eq!(cell.weight, 1.0);
    assert_eq!(cell.max_in_flight, 512);
}

#[test]
fn empty_sections_take_their_defaults() {
    let config = parse(&format!(
        "[redis]\nurl = \"redis://127.0.0.1:6379\"\n[routing]\n[delivery]\n[ratelimit]\n{CELL}"
    ));
    assert_eq!(config.redis.unwrap().timeout, Duration::from_millis(10));
    assert_eq!(config.delivery, Some(DeliveryConfig::default()));
    assert_eq!(config.ratelimit, Some(RateLimitConfig::default()));
}

#[test]
fn policy_burst_defaults_to_limit() {
    let config = parse(&format!(
        "{CELL}[[ratelimit.policies]]\nname = \"p\"\nkey = \"global\"\nlimit = 7\nper = \"1m\"\n"
    ));
    let policy = &config.ratelimit.unwrap().policies[0];
    assert_eq!((policy.limit, policy.burst), (7, 7));
    assert_eq!(policy.per, Duration::from_secs(60));
}

#[test]
fn byte_sizes_accept_units_and_integers() {
    let config = parse(&format!(
        "[server]\nmax_request_body = \"10MB\"\nmax_header_bytes = 4096\n{CELL}"
    ));
    assert_eq!(config.server.max_request_body, 10_000_000);
    assert_eq!(config.server.max_header_bytes, 4096);
    let config = parse(&format!(
        "[server]\nmax_request_body = 1024\nmax_header_bytes = \"1MiB\"\n{CELL}"
    ));
    assert_eq!(config.server.max_request_body, 1024);
    assert_eq!(config.server.max_header_bytes, 1 << 20);
}

#[test]
fn key_sources_and_redis_cluster() {
    let config = parse(&format!(
        "[redis]\ncluster = [\"redis://10.0.0.1:7000\", \"rediss://u:p@10.0.0.2:7000\"]\n\
         [routing]\nkey = [\"query:user\", \"cookie:uid\", \"header:X-User\", \"ip\"]\nmissing_key = \"ip\"\n{CELL}"
    ));
    assert_eq!(
        config.redis.unwrap().target,
        gateway::config::RedisTarget::Cluster(vec![
            "redis://10.0.0.1:7000".into(),
            "rediss://u:p@10.0.0.2:7000".into()
        ])
    );
    let shown: Vec<String> = config.routing.key.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["query:user", "cookie:uid", "header:x-user", "ip"]);
    assert_eq!(config.routing.missing_key, gateway::config::MissingKey::Ip);
}

#[test]
fn non_loopback_admin_with_token_and_zero_weight_cells_are_fine() {
    let config = parse(
        "[server]\nadmin_listen = \"0.0.0.0:9901\"\nadmin_token = \"x\"\n\
         [[cells]]\nname = \"a\"\nupstreams = [\"a:1\"]\nweight = 0\n\
         [[cells]]\nname = \"b\"\nupstreams = [\"b:1\"]\nweight = 2.5\n",
    );
    assert_eq!(config.cells[0].weight, 0.0);
    assert_eq!(config.cells[1].weight, 2.5);
}

#[test]
fn auto_evacuation_is_off_unless_enabled() {
    use cell_router::containment::AutoEvacuationConfig;
    let off = parse(CELL).control.auto_evacuation;
    assert_eq!(off, AutoEvacuationConfig::default());
    assert!(!off.enabled);
    assert_eq!(off.max_auto_evacuated, 1);
    let on = parse(&format!(
        "[control.auto_evacuation]\nenabled = true\nopen_for = \"10s\"\nhealthy_for = \"2m\"\n\
         max_auto_evacuated = 2\ndrain_over = \"0s\"\nundrain_over = \"5m\"\n{CELL}"
    ))
    .control
    .auto_evacuation;
    assert_eq!(
        on,
        AutoEvacuationConfig {
            enabled: true,
            open_for: Duration::from_secs(10),
            healthy_for: Duration::from_secs(120),
            max_auto_evacuated: 2,
            drain_over: Duration::ZERO,
            undrain_over: Duration::from_secs(300),
        }
    );
}
