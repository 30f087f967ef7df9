use super::*;

#[test]
fn parses_the_issue_example() {
    let c = parse(
        r#"
[tag.web]
command = ["python3", "-m", "http.server", "8000"]
retries = 5
period = 60
level = -1
env = { PORT = "8000" }
"#,
        0,
        0,
    )
    .unwrap();
    assert_eq!(c.tags.len(), 1);
    assert_eq!(c.tags[0].1.env, vec![("PORT".to_string(), "8000".to_string())]);
}

#[test]
fn errors_name_the_problem() {
    let e = |t: &str| parse(t, 0, 0).unwrap_err().to_string();
    assert!(e("[tag.a]\ncommand = []").contains("tag.a: tag a: the command is empty"));
    assert!(e("[tag.a]\ncommand = [\"x\"]\nlevel = -2").contains("level -2"));
    assert!(e("[tag.a]\ncommand = [\"x\"]\nafter = [\"b\"]").contains("not declared"));
    assert!(
        e("[tag.a]\ncommand = [\"x\"]\nafter = [\"b\"]\n[tag.b]\ncommand = [\"x\"]\nafter = [\"a\"]").contains("cycle")
    );
    assert!(e("[tag.a]\ncommand = [\"x\"]\nbogus = 1").contains("bogus"));
    assert!(e("[tag.\"a b\"]\ncommand = [\"x\"]").contains("whitespace"));
    assert!(e("[daemon]\nstorm = \"5:1\"").contains("daemon.storm: storm \"5:1\" is neither off nor"));
    assert!(e("[daemon]\ntags_per_uid = 1000001").contains("daemon.tags_per_uid = 1000001 is above"));
    assert!(e("[tag.a]\ncommand = [\"x\"]\nstorm = \"0:1:2\"").contains("tag.a: storm \"0:1:2\": AFTER 0"));
}

#[test]
fn storm_settings() {
    let c = parse(
        "[daemon]\nstorm = \"off\"\ntags_per_uid = 3\n[tag.a]\ncommand = [\"x\"]\nstorm = \"2:0.5:10\"\n",
        0,
        0,
    )
    .unwrap();
    assert_eq!(c.settings.storm, None);
    assert_eq!(c.settings.quotas.tags_per_uid, 3);
    let a = TagName::new("a").unwrap();
    assert_eq!(
        c.settings.storm_overrides[&a],
        Some(vigil_core::Storm {
            after: 2,
            min: Duration::from_millis(500),
            max: Duration::from_secs(10),
            quick: Duration::from_secs(1),
        })
    );
    let d = parse("", 0, 0).unwrap().settings;
    assert_eq!(d.storm, Some(vigil_core::Storm::default()));
    assert_eq!(d.quotas.tags_per_uid, TAGS_PER_UID);
}

#[test]
fn connection_limits() {
    let d = Settings::default();
    assert_eq!(
        (
            d.max_connections_per_uid,
            d.max_connections,
            d.max_in_flight,
            d.queue_bytes
        ),
        (256, 4096, 64, 16 << 20)
    );
    assert_eq!(
        (d.hello_timeout, d.frame_timeout, d.send_timeout),
        (Duration::from_secs(5), Duration::from_secs(10), Duration::from_secs(30))
    );
    let c = parse(
        "[daemon]\nmax_connections_per_uid = 3\nmax_connections = 9\nhello_timeout = 0.5\n\
             frame_timeout = 2\nsend_timeout = 1\nmax_in_flight = 4\nqueue_bytes = 8388608\n",
        0,
        0,
    )
    .unwrap()
    .settings;
    assert_eq!(
        (
            c.max_connections_per_uid,
            c.max_connections,
            c.max_in_flight,
            c.queue_bytes
        ),
        (3, 9, 4, 8 << 20)
    );
    assert_eq!(
        (c.hello_timeout, c.frame_timeout, c.send_timeout),
        (
            Duration::from_millis(500),
            Duration::from_secs(2),
            Duration::from_secs(1)
        )
    );
    let e = |t: &str| parse(&format!("[daemon]\n{t}"), 0, 0).unwrap_err().to_string();
    assert!(e("max_connections_per_uid = 0").contains("daemon.max_connections_per_uid = 0 is outside 1..="));
    assert!(e("max_in_flight = 0").contains("daemon.max_in_flight = 0 is outside"));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(d.busy_poll, Duration::from_micros(if cpus > 1 { 50 } else { 0 }));
    let b = |t: &str| parse(&format!("[daemon]\n{t}"), 0, 0).unwrap().settings.busy_poll;
    assert_eq!(b("busy_poll_us = 0"), Duration::ZERO);
    assert_eq!(b("busy_poll_us = 1000"), Duration::from_millis(1));
    assert_eq!(b("busy_poll_us = 5"), Duration::from_micros(5));
    assert!(e("busy_poll_us = 1001").contains("daemon.busy_poll_us = 1001 is outside 5..=1000 (0 turns"));
    assert!(e("busy_poll_us = 4").contains("daemon.busy_poll_us = 4 is outside 5..=1000"));
    assert!(e("busy_poll_us = -1").contains("busy_poll_us"));
    assert_eq!(d.realtime_priority, if cpus > 1 { 1 } else { 0 });
    let r = |t: &str| {
        parse(&format!("[daemon]\n{t}"), 0, 0)
            .unwrap()
            .settings
            .realtime_priority
    };
    assert_eq!(r("realtime_priority = 0"), 0);
    assert_eq!(r("realtime_priority = 99"), 99);
    assert!(e("realtime_priority = 100").contains("daemon.realtime_priority = 100 is outside 1..=99 (0 runs"));
    assert!(e("realtime_priority = -1").contains("realtime_priority"));
    assert!(e("queue_bytes = 1000").contains("daemon.queue_bytes = 1000 is outside 4194308..="));
    assert_eq!(d.request_bytes_per_uid, 64 << 20);
    assert!(e("request_bytes_per_uid = 1000").contains("daemon.request_bytes_per_uid = 1000 is outside 4194308..="));
    let r = parse("[daemon]\nrequest_bytes_per_uid = 8388608\n", 0, 0)
        .unwrap()
        .settings;
    assert_eq!(r.request_bytes_per_uid, 8 << 20);
    assert!(e("frame_timeout = 0").contains("daemon.frame_timeout = 0 is outside"));
    assert!(e("hello_timeout = -1").contains("daemon.hello_timeout = -1 is outside"));
}

#[test]
fn health_checks() {
    let c = parse(
        r#"
[tag.web]
command = ["python3", "-m", "http.server", "8000"]
watchdog = 2.5
[[tag.web.probe]]
http = "http://127.0.0.1:8000/"
interval = 1
[[tag.web.probe]]
exec = "test -e /"
timeout = 0.5
threshold = 2
[[tag.web.probe]]
tcp = "[::1]:8000"
"#,
        0,
        0,
    )
    .unwrap();
    let h = &c.tags[0].1.health;
    assert_eq!(h.watchdog, Some(Duration::from_millis(2500)));
    let shown: Vec<String> = h.probes.iter().map(|p| p.check.to_string()).collect();
    assert_eq!(shown, ["http://127.0.0.1:8000/", "exec:test -e /", "tcp:[::1]:8000"]);
    assert_eq!(
        (h.probes[0].interval, h.probes[0].timeout, h.probes[0].threshold),
        (Duration::from_secs(1), Duration::from_secs(1), 3),
        "defaults, the timeout within the interval"
    );
    assert_eq!(
        (h.probes[1].timeout, h.probes[1].threshold),
        (Duration::from_millis(500), 2)
    );

    let e = |t: &str| {
        parse(&format!("[tag.a]\ncommand = [\"x\"]\n{t}"), 0, 0)
            .unwrap_err()
            .to_string()
    };
    assert!(
        e("watchdog = 0").contains("tag.a: watchdog = 0 is outside"),
        "{}",
        e("watchdog = 0")
    );
    assert!(e("watchdog = -1").contains("watchdog = -1 is outside"));
    assert!(e("[[tag.a.probe]]\ntcp = \"h:1\"\nhttp = \"http://h/\"").contains("exactly one of"));
    assert!(e("[[tag.a.probe]]\nudp = \"h:1\"").contains("unknown field `udp`"));
    assert!(e("[[tag.a.probe]]\ntcp = \"h:99999\"").contains("port \"99999\" is not a number from 1 to 65535"));
    assert!(e("[[tag.a.probe]]\ntcp = \"h:1\"\nthreshold = 0").contains("threshold 0 is out of range"));
    assert!(e("[[tag.a.probe]]\ntcp = \"h:1\"\ninterval = 0").contains("probe[0].interval = 0 is outside"));
}

#[test]
fn resource_keys_and_their_errors() {
    let c = parse(
        r#"
[tag.a]
command = ["x"]
user = "root"
group = 0
limits = { nofile = 4096, core = "0:unlimited" }
nice = 3
umask = "027"
stderr_log = "/tmp/a.err"
tag_group = "web"
"#,
        0,
        0,
    )
    .unwrap();
    let r = &c.tags[0].1.res;
    assert_eq!((r.user.as_deref(), r.group.as_deref()), (Some("root"), Some("root")));
    assert_eq!(
        r.limits.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
        ["core=0:unlimited", "nofile=4096"]
    );
    assert_eq!((r.nice, r.umask), (Some(3), Some(0o27)));
    assert_eq!(r.tag_group.as_deref(), Some("web"));

    let e = |t: &str| parse(t, 0, 0).unwrap_err().to_string();
    let tag = |extra: &str| format!("[tag.a]\ncommand = [\"x\"]\n{extra}");
    assert!(e(&tag("limits = { files = 1 }")).contains("tag.a: unknown resource limit \"files\""));
    assert!(e(&tag("limits = { nofile = \"lots\" }")).contains("nofile=\"lots\" is not NUMBER"));
    assert!(e(&tag("umask = \"9\"")).contains("umask = \"9\" is not an octal number"));
    assert!(e(&tag("nice = 30")).contains("nice 30 is outside -20..=19"));
    assert!(e(&tag("stderr_log = \"rel.err\"")).contains("is not an absolute path"));
    assert!(e(&tag("user = \"no-such-user-of-vigil\"")).contains("no such user: no-such-user-of-vigil"));
    assert!(e(&tag("env_file = \"/nonexistent/vigil.env\"")).contains("env_file /nonexistent/vigil.env:"));
    // A vigild of an ordinary user runs its config's tags as that user only.
    let e = parse(&tag("user = \"root\""), 1000, 1000).unwrap_err().to_string();
    assert!(e.contains("only root may run a tag as another user"), "{e}");
}

#[test]
fn env_file_is_read_relative_to_the_config_and_env_wins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.env"), "A=file\nB=file\nB=later\n").unwrap();
    let c = parse_in(
        "[tag.a]\ncommand = [\"x\"]\nenv_file = \"a.env\"\nenv = { A = \"table\" }\n",
        0,
        0,
        Some(dir.path()),
    )
    .unwrap();
    assert_eq!(
        c.tags[0].1.env,
        vec![
            ("B".to_string(), "later".to_string()),
            ("A".to_string(), "table".to_string())
        ]
    );
}

#[test]
fn a_tag_without_resources_keeps_the_spec_it_had_before_them() {
    // A tag restored from a schema-4 state file has no resources: its config entry must compare
    // equal, or the first start of a new vigild would restart every config tag.
    let c = parse("[tag.a]\ncommand = [\"x\"]\n", 0, 0).unwrap();
    assert_eq!(c.tags[0].1.res, vigil_core::Resources::default());
}

#[test]
fn http_tls_takes_both_files_and_a_listener() {
    let base = "[http]\nlisten = \"127.0.0.1:9797\"\ntoken_file = \"/t\"\n";
    let c = parse(&format!("{base}tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n"), 0, 0).unwrap();
    assert_eq!(
        c.settings.http.tls,
        Some(TlsFiles {
            cert: "/c.pem".into(),
            key: "/k.pem".into()
        })
    );
    assert_eq!(parse(base, 0, 0).unwrap().settings.http.tls, None);
    let e = |t: &str| parse(t, 0, 0).unwrap_err().to_string();
    let got = e(&format!("{base}tls_cert = \"/c.pem\"\n"));
    assert!(got.contains("http.tls_cert is set without http.tls_key"), "{got}");
    let got = e(&format!("{base}tls_key = \"/k.pem\"\n"));
    assert!(got.contains("http.tls_key is set without http.tls_cert"), "{got}");
    let got = e("[http]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n");
    assert!(got.contains("set without http.listen"), "{got}");
}
