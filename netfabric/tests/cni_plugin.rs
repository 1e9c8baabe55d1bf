//! The CNI plugin binary as a runtime runs it (`CNI_*` environment, the
//! network configuration on stdin) against a lab host (needs root, bpffs,
//! namespaces): ADD, CHECK, DEL, idempotent DELs, parallel ADDs and DELs,
//! refusals that change nothing, STATUS, VERSION.

use std::{
    path::Path,
    process::{Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

mod common;

use common::{Lab, TestNetns, nf, ok, ping, require_root_and_bpffs};
use serde_json::{Value, json};

const CNI: &str = env!("CARGO_BIN_EXE_netfabric-cni");

/// What one plugin run printed.
#[derive(Debug)]
struct Ran {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    fn ok(&self) -> &Self {
        assert!(
            self.success,
            "the plugin failed: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// A failure with the error code `code`; returns the error document.
    fn failed_with(&self, code: u64) -> Value {
        assert!(!self.success, "the plugin succeeded: {self:?}");
        let doc = self.json();
        assert_eq!(doc["code"], code, "{self:?}");
        assert!(doc["msg"].as_str().is_some_and(|m| !m.is_empty()), "{doc}");
        assert!(doc["cniVersion"].is_string(), "{doc}");
        doc
    }
}

fn cni(command: &str, vars: &[(&str, &str)], conf: &Value) -> Ran {
    let mut cmd = Command::new(CNI);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_PATH", "/opt/cni/bin")
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("running netfabric-cni");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(conf.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Ran {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The environment of ADD/CHECK/DEL for container `name` in `netns`.
fn vars<'a>(id: &'a str, netns: &'a str, args: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("CNI_CONTAINERID", id),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", args),
    ];
    if !netns.is_empty() {
        v.push(("CNI_NETNS", netns));
    }
    v
}

struct Setup {
    lab: Lab,
    store: String,
    host: String,
    conf: Value,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        require_root_and_bpffs();
        let (lab, _) = Lab::up(tag, 1);
        let (name, dir) = (lab.name.clone(), lab.dir.clone());
        let store = format!("file://{dir}/state.json");
        let host = format!("{name}-h1");
        let conf = json!({
            "cniVersion": "1.0.0",
            "name": format!("{name}-net"),
            "type": "netfabric-cni",
            "store": store,
            "host": host,
            "hostNetns": format!("/run/netns/nf-{host}"),
            "lockDir": dir,
        });
        Setup {
            lab,
            store,
            host,
            conf,
        }
    }

    fn containers(&self) -> Value {
        serde_json::from_str(&ok(&nf(&[
            "--store",
            &self.store,
            "container",
            "list",
            "-o",
            "json",
        ])))
        .unwrap()
    }

    fn address_of(&self, name: &str) -> Option<String> {
        self.containers()
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["address"].as_str().unwrap().to_owned())
    }

    fn host_ports(&self) -> String {
        ok(&Command::new("ip")
            .args(["-n", &format!("nf-{}", self.host), "-o", "link"])
            .output()
            .unwrap())
    }

    fn container_name(&self, base: &str) -> String {
        format!("{}-{base}", self.lab.name)
    }
}

/// CHECK until it succeeds: the agent attaches a new port's programs and
/// brings it up within its rescan interval.
fn check_eventually(vars: &[(&str, &str)], conf: &Value) -> Ran {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ran = cni("CHECK", vars, conf);
        if ran.success || Instant::now() > deadline {
            return ran;
        }
        sleep(Duration::from_millis(100));
    }
}

#[test]
fn add_check_del_against_a_lab_host() {
    let s = Setup::new("cp");
    let name = s.container_name("app");
    let ns = TestNetns::new(&format!("nf-{name}"));
    let netns = ns.path();
    let args = format!("IgnoreUnknown=1;K8S_POD_NAME={name};owner=alice");
    let v = vars("c0ffee", &netns, &args);

    // VERSION.
    let version = cni("VERSION", &[], &json!({"cniVersion": "1.0.0"}));
    assert_eq!(
        version.ok().json(),
        json!({"cniVersion": "1.0.0", "supportedVersions": ["1.0.0", "1.1.0"]})
    );

    // ADD: created in the store with its owner, attached, the result says so.
    let started = Instant::now();
    let added = cni("ADD", &v, &s.conf);
    let add_took = started.elapsed();
    let result = added.ok().json();
    let address = s.address_of(&name).expect("ADD created the container");
    let mac = ok(&Command::new("ip")
        .args(["-n", &ns.0, "-o", "link", "show", "eth0"])
        .output()
        .unwrap());
    let expected_mac = {
        let o: Vec<u8> = address.split('.').map(|x| x.parse().unwrap()).collect();
        format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
    };
    assert!(mac.contains(&expected_mac), "{mac}");
    let octet = address.rsplit('.').next().unwrap();
    assert_eq!(result["cniVersion"], "1.0.0");
    assert_eq!(result["interfaces"][0]["name"], format!("nfc{octet}"));
    assert!(result["interfaces"][0]["sandbox"].is_null(), "{result}");
    assert_eq!(
        result["interfaces"][1],
        json!({"name": "eth0", "mac": expected_mac, "sandbox": netns})
    );
    assert_eq!(
        result["ips"],
        json!([{"address": format!("{address}/32"), "gateway": "169.254.1.1", "interface": 1}])
    );
    assert_eq!(
        result["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}])
    );
    // The agent's DNS server, with the owner's search list.
    assert_eq!(
        result["dns"],
        json!({
            "nameservers": ["169.254.1.1"],
            "search": ["alice.netfabric.internal", "netfabric.internal"],
            "options": ["ndots:2"],
        })
    );
    let owner = s
        .containers()
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name.as_str())
        .map(|c| c["owner"].clone());
    assert_eq!(owner, Some(json!("alice")));

    // CHECK with the result as prevResult, once the agent has attached it.
    let mut with_prev = s.conf.clone();
    with_prev["prevResult"] = result.clone();
    check_eventually(&v, &with_prev).ok();
    println!(
        "ADD took {add_took:?}; CHECK passed (the agent attached the port) {:?} after ADD began",
        started.elapsed()
    );
    // The owner's lab container reaches it; bob's does not.
    let lab = &s.lab.name;
    assert!(ping(&format!("nf-{lab}-alice-web"), &address, 2));
    assert!(!ping(&format!("nf-{lab}-bob-web"), &address, 1));
    // CHECK notices a different address in prevResult, and a missing interface.
    let mut wrong_prev = s.conf.clone();
    wrong_prev["prevResult"] = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.9.9.9/32"}]});
    cni("CHECK", &v, &wrong_prev).failed_with(103);
    let other_if = [
        ("CNI_CONTAINERID", "c0ffee"),
        ("CNI_IFNAME", "eth1"),
        ("CNI_ARGS", args.as_str()),
        ("CNI_NETNS", netns.as_str()),
    ];
    cni("CHECK", &other_if, &with_prev).failed_with(103);
    // CHECK without prevResult: the specification requires it.
    let doc = cni("CHECK", &v, &s.conf).failed_with(7);
    assert!(
        doc["msg"].as_str().unwrap().starts_with("prevResult:"),
        "{doc}"
    );

    // ADD again without DEL: the interface exists, which the specification
    // makes an error; the attachment stays as it was.
    let ports = s.host_ports();
    let doc = cni("ADD", &v, &s.conf).failed_with(104);
    assert!(
        doc["msg"].as_str().unwrap().starts_with("CNI_IFNAME:"),
        "{doc}"
    );
    assert_eq!(s.host_ports(), ports);
    check_eventually(&v, &with_prev).ok();

    // DEL: the interface and its host port go, the container stays in the store.
    cni("DEL", &v, &s.conf).ok();
    assert!(
        !s.host_ports().contains(&format!("nfc{octet}@")),
        "{}",
        s.host_ports()
    );
    assert_eq!(s.address_of(&name).as_deref(), Some(address.as_str()));
    // DEL is idempotent: again, without a namespace, with the namespace
    // gone, for an unknown container, with the store unreachable.
    cni("DEL", &v, &s.conf).ok();
    cni("DEL", &vars("c0ffee", "", &args), &s.conf).ok();
    let gone = format!("/run/netns/nf-{name}-gone");
    cni("DEL", &vars("c0ffee", &gone, &args), &s.conf).ok();
    cni(
        "DEL",
        &vars("c1", &netns, "K8S_POD_NAME=nobody-here"),
        &s.conf,
    )
    .ok();
    let mut no_store = s.conf.clone();
    no_store["store"] = json!("etcd://127.0.0.1:1");
    cni("DEL", &v, &no_store).ok();
    // CHECK after DEL fails: nothing is attached.
    cni("CHECK", &v, &with_prev).failed_with(103);

    // A new namespace under the same name gets the same address back.
    drop(ns);
    let ns = TestNetns::new(&format!("nf-{name}"));
    let readded = cni("ADD", &v, &s.conf).ok().json();
    assert_eq!(readded["ips"], result["ips"]);
    check_eventually(&v, &with_prev).ok();
    assert!(ping(&format!("nf-{lab}-alice-web"), &address, 2));
    cni("DEL", &v, &s.conf).ok();
    drop(ns);

    // STATUS: the store answers and the agent has attached the datapath.
    let mut v11 = s.conf.clone();
    v11["cniVersion"] = json!("1.1.0");
    cni("STATUS", &[], &v11).ok();
    let mut unknown_host = v11.clone();
    unknown_host["host"] = json!("no-such-host");
    cni("STATUS", &[], &unknown_host).failed_with(50);
    // GC: nothing per attachment to collect.
    cni("GC", &[], &v11).ok();

    // The runtime names the interface: CNI_IFNAME other than eth0.
    let name2 = s.container_name("app2");
    let ns2 = TestNetns::new(&format!("nf-{name2}"));
    let netns2 = ns2.path();
    let args2 = format!("K8S_POD_NAME={name2};owner=alice");
    let v2 = [
        ("CNI_CONTAINERID", "c2"),
        ("CNI_IFNAME", "net1"),
        ("CNI_ARGS", args2.as_str()),
        ("CNI_NETNS", netns2.as_str()),
    ];
    let result2 = cni("ADD", &v2, &s.conf).ok().json();
    assert_eq!(result2["interfaces"][1]["name"], "net1");
    let mut prev2 = s.conf.clone();
    prev2["prevResult"] = result2.clone();
    check_eventually(&v2, &prev2).ok();
    let address2 = s.address_of(&name2).unwrap();
    assert!(ping(&format!("nf-{lab}-alice-web"), &address2, 2));
    cni("DEL", &v2, &s.conf).ok();
    let left = ok(&Command::new("ip")
        .args(["-n", &ns2.0, "-o", "link"])
        .output()
        .unwrap());
    assert!(!left.contains("net1"), "{left}");
}

#[test]
fn refused_adds_change_nothing() {
    let s = Setup::new("cr");
    let name = s.container_name("stray");
    let ns = TestNetns::new(&format!("nf-{name}"));
    let netns = ns.path();
    let before = s.containers();
    let ports = s.host_ports();
    let pod = format!("K8S_POD_NAME={name}");
    // Unknown container and no owner named: code 100.
    let doc = cni("ADD", &vars("c2", &netns, &pod), &s.conf).failed_with(100);
    assert!(doc["msg"].as_str().unwrap().contains(&name), "{doc}");
    // An owner the store does not know, from CNI_ARGS and from defaultOwner.
    let mallory = format!("{pod};owner=mallory");
    let doc = cni("ADD", &vars("c2", &netns, &mallory), &s.conf).failed_with(4);
    assert!(
        doc["msg"].as_str().unwrap().starts_with("CNI_ARGS owner:"),
        "{doc}"
    );
    let mut default_mallory = s.conf.clone();
    default_mallory["defaultOwner"] = json!("mallory");
    let doc = cni("ADD", &vars("c2", &netns, &pod), &default_mallory).failed_with(7);
    assert!(
        doc["msg"].as_str().unwrap().starts_with("defaultOwner:"),
        "{doc}"
    );
    // A misspelt field of the configuration: code 2, naming it.
    let mut misspelt = s.conf.clone();
    misspelt["defaultowner"] = json!("alice");
    let doc = cni("ADD", &vars("c2", &netns, &pod), &misspelt).failed_with(2);
    assert!(
        doc["msg"].as_str().unwrap().starts_with("defaultowner:"),
        "{doc}"
    );
    // A version the plugin does not speak: code 1, answered in that version.
    let mut old = s.conf.clone();
    old["cniVersion"] = json!("0.3.1");
    let doc = cni("ADD", &vars("c2", &netns, &pod), &old).failed_with(1);
    assert_eq!(doc["cniVersion"], "0.3.1");
    // A host the store does not know: code 7, naming the field.
    let mut other_host = s.conf.clone();
    other_host["host"] = json!("no-such-host");
    let doc = cni("ADD", &vars("c2", &netns, &pod), &other_host).failed_with(7);
    assert!(doc["msg"].as_str().unwrap().starts_with("host:"), "{doc}");
    // A lab container of another host... there is one host: a name the
    // runtime gives that is no netfabric name.
    cni(
        "ADD",
        &vars("c2", &netns, "K8S_POD_NAME=Bad_Name;owner=alice"),
        &s.conf,
    )
    .failed_with(4);
    // An existing container claimed for another owner.
    let web = format!("K8S_POD_NAME={};owner=bob", s.container_name("alice-web"));
    cni("ADD", &vars("c2", &netns, &web), &s.conf).failed_with(102);
    // Missing CNI_NETNS on ADD.
    cni("ADD", &vars("c2", "", &pod), &s.conf).failed_with(4);
    // The store unreachable: try again later.
    let mut no_store = s.conf.clone();
    no_store["store"] = json!("etcd://127.0.0.1:1");
    no_store["defaultOwner"] = json!("alice");
    cni("ADD", &vars("c2", &netns, &pod), &no_store).failed_with(11);

    assert_eq!(s.containers(), before, "a refused ADD changed the store");
    assert_eq!(s.host_ports(), ports, "a refused ADD made a port");
    let inside = ok(&Command::new("ip")
        .args(["-n", &ns.0, "-o", "link"])
        .output()
        .unwrap());
    assert!(!inside.contains("eth0"), "{inside}");
}

#[test]
fn parallel_adds_and_dels_on_one_host() {
    const N: usize = 8;
    let s = Setup::new("cq");
    let mut conf = s.conf.clone();
    conf["defaultOwner"] = json!("alice");
    let names: Vec<String> = (0..N).map(|i| s.container_name(&format!("p{i}"))).collect();
    let namespaces: Vec<TestNetns> = names
        .iter()
        .map(|n| TestNetns::new(&format!("nf-{n}")))
        .collect();
    let run_all = |command: &'static str| -> Vec<Ran> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = names
                .iter()
                .zip(&namespaces)
                .enumerate()
                .map(|(i, (name, ns))| {
                    let conf = &conf;
                    scope.spawn(move || {
                        let id = format!("id{i}");
                        let args = format!("IgnoreUnknown=1;K8S_POD_NAME={name}");
                        let netns = ns.path();
                        cni(command, &vars(&id, &netns, &args), conf)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let started = Instant::now();
    let added = run_all("ADD");
    println!("{N} parallel ADDs took {:?}", started.elapsed());
    let mut addresses: Vec<String> = added
        .iter()
        .map(|r| {
            r.ok().json()["ips"][0]["address"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for (name, ip) in names.iter().zip(&addresses) {
        assert_eq!(
            s.address_of(name).map(|a| format!("{a}/32")).as_deref(),
            Some(ip.as_str()),
            "{name}"
        );
    }
    addresses.sort();
    addresses.dedup();
    assert_eq!(
        addresses.len(),
        N,
        "parallel ADDs handed out one address twice"
    );
    for (i, ((name, ns), ran)) in names.iter().zip(&namespaces).zip(&added).enumerate() {
        let id = format!("id{i}");
        let args = format!("K8S_POD_NAME={name}");
        let netns = ns.path();
        let mut with_prev = conf.clone();
        with_prev["prevResult"] = ran.json();
        check_eventually(&vars(&id, &netns, &args), &with_prev).ok();
    }
    for r in run_all("DEL") {
        r.ok();
    }
    for r in run_all("DEL") {
        r.ok();
    }
    let ports = s.host_ports();
    for ip in &addresses {
        let octet = ip.trim_end_matches("/32").rsplit('.').next().unwrap();
        assert!(!ports.contains(&format!("nfc{octet}@")), "{ports}");
    }
}

/// The plugin leaves the datapath to the agent: its binary does not embed
/// the eBPF object (an ELF64 little-endian relocatable for EM_BPF), which
/// the `netfabric` binary does.
#[test]
fn the_plugin_binary_embeds_no_ebpf_object() {
    let header: [u8; 20] = [
        0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0xf7, 0,
    ];
    let embeds = |path: &str| {
        let bytes = std::fs::read(path).unwrap();
        bytes.windows(header.len()).any(|w| w == header)
    };
    assert!(
        embeds(common::BIN),
        "the check must find the object in netfabric"
    );
    assert!(!embeds(CNI), "netfabric-cni embeds the eBPF object");
    assert!(Path::new(CNI).is_file());
}

/// `cni install`: bad input exits 2 naming the option and writes nothing;
/// good input writes the plugin (executable, the same bytes) and a
/// conflist naming the store, the host and the default owner.
#[test]
fn install_refuses_bad_input_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file://{}/state.json", dir.path().display());
    let nf_store = |args: &[&str]| {
        let mut all = vec!["--store", store.as_str()];
        all.extend_from_slice(args);
        nf(&all)
    };
    ok(&nf_store(&[
        "zone",
        "create",
        "z1",
        "--prefix",
        "10.1.0.0/16",
    ]));
    ok(&nf_store(&[
        "host",
        "create",
        "h1",
        "--zone",
        "z1",
        "--number",
        "1",
        "--uplink",
        "eth0",
        "--underlay-ip",
        "192.0.2.1",
        "--underlay-mac",
        "02:00:00:00:00:01",
    ]));
    ok(&nf_store(&["owner", "create", "alice"]));
    let bin = dir.path().join("bin");
    let conf = dir.path().join("net.d");
    let (bin_s, conf_s) = (bin.to_str().unwrap(), conf.to_str().unwrap());
    let install = |args: &[&str], plugin: &str| {
        let mut all = vec!["cni", "install", "--bin-dir", bin_s, "--conf-dir", conf_s];
        all.extend_from_slice(&["--plugin", plugin]);
        all.extend_from_slice(args);
        nf_store(&all)
    };
    for (args, plugin, field) in [
        (vec!["--host", "nope"], CNI, "--host"),
        (
            vec!["--host", "h1", "--default-owner", "bob"],
            CNI,
            "--default-owner",
        ),
        (
            vec!["--host", "h1", "--network", "Bad_Name"],
            CNI,
            "--network",
        ),
        (
            vec!["--host", "h1"],
            "/nonexistent/netfabric-cni",
            "--plugin",
        ),
    ] {
        let out = install(&args, plugin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(field), "{args:?}: {stderr}");
        assert!(!bin.exists() && !conf.exists(), "{args:?} wrote something");
    }
    ok(&install(
        &[
            "--host",
            "h1",
            "--default-owner",
            "alice",
            "--network",
            "blue",
        ],
        CNI,
    ));
    let installed = bin.join("netfabric-cni");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(CNI).unwrap()
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let list: Value =
        serde_json::from_slice(&std::fs::read(conf.join("10-blue.conflist")).unwrap()).unwrap();
    assert_eq!(
        list,
        json!({
            "cniVersion": "1.0.0",
            "name": "blue",
            "plugins": [{
                "type": "netfabric-cni",
                "store": store,
                "host": "h1",
                "defaultOwner": "alice",
            }],
        })
    );
    // Nothing but the two files (no temporary copies left behind).
    assert_eq!(std::fs::read_dir(&bin).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(&conf).unwrap().count(), 1);
}
