//! `cellgate echo-cell` flags.

use std::time::Duration;

use clap::Parser;
use gateway::echo::{EchoArgs, EchoOptions};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    echo: EchoArgs,
}

fn parse(args: &[&str]) -> Result<EchoArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("echo-cell").chain(args.iter().copied())).map(|c| c.echo)
}

#[test]
fn defaults_describe_a_healthy_cell_on_7001() {
    let args = parse(&["--name", "cell-1"]).unwrap();
    assert_eq!(args.listen.to_string(), "127.0.0.1:7001");
    assert_eq!(args.options(), EchoOptions::new("cell-1"));
}

#[test]
fn every_flag_reaches_the_options() {
    let args = parse(&[
        "--name",
        "cell-2",
        "--listen",
        "127.0.0.1:0",
        "--instance",
        "i-9",
        "--latency",
        "5ms",
        "--error-rate",
        "0.1",
    ])
    .unwrap();
    let opts = args.options();
    assert_eq!(opts.name, "cell-2");
    assert_eq!(opts.instance.as_deref(), Some("i-9"));
    assert_eq!(opts.latency, Duration::from_millis(5));
    assert!((opts.error_rate - 0.1).abs() < f64::EPSILON);
}

#[test]
fn invalid_values_are_refused_with_a_clear_error() {
    for rate in ["1.5", "-0.1", "NaN", "often"] {
        let flag = format!("--error-rate={rate}");
        let error = parse(&["--name", "c", &flag]).unwrap_err().to_string();
        assert!(error.contains("between 0 and 1"), "{rate}: {error}");
    }
    assert!(parse(&["--name", "c", "--latency", "fast"]).is_err());
    assert!(
        parse(&["--listen", "127.0.0.1:7001"]).is_err(),
        "--name is required"
    );
}
