//! A real runtime: podman (Debian 12's 4.3, CNI backend, runc) runs
//! containers from a busybox root filesystem on a two-host lab through
//! `netfabric-cni`, installed by `netfabric cni install` (needs root,
//! bpffs, namespaces, `cargo xtask setup`'s podman packages).
//!
//! Podman runs with a private configuration (`CONTAINERS_CONF`), storage
//! and run directories under the test's directory, so nothing touches the
//! machine's podman state; every name derives from the test's unique lab
//! name, and everything is removed on drop, also when the test fails.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    thread::sleep,
    time::{Duration, Instant},
};

mod common;

use common::{Lab, in_ns, nf, ok, ping, require_root_and_bpffs};

const CNI: &str = env!("CARGO_BIN_EXE_netfabric-cni");

/// A private podman: its own configuration, storage and run directories.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn new(dir: &Path, network_dir: &Path, plugin_dir: &Path) -> Podman {
        std::fs::create_dir_all(dir).unwrap();
        // runc and cgroupfs: crun refuses this VM's hybrid cgroups; small
        // explicit rlimits: podman's processes may not raise theirs.
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=256:256\", \"nproc=256:256\"]\n\
                 [network]\n\
                 network_backend = \"cni\"\n\
                 cni_plugin_dirs = [\"{}\"]\n\
                 network_config_dir = \"{}\"\n\
                 [engine]\n\
                 runtime = \"runc\"\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n",
                plugin_dir.display(),
                network_dir.display()
            ),
        )
        .unwrap();
        Podman {
            dir: dir.to_owned(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Output {
        let d = |sub: &str| self.dir.join(sub).display().to_string();
        Command::new("timeout")
            .arg("120")
            .arg("podman")
            .args(["--root", &d("root"), "--runroot", &d("runroot")])
            .args(["--tmpdir", &d("tmp")])
            .args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .output()
            .expect("running podman")
    }

    /// A root filesystem of its own for one container: busybox and links.
    fn rootfs(&self, name: &str) -> String {
        let root = self.dir.join(format!("rootfs-{name}"));
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/bin/busybox", bin.join("busybox"))
            .expect("/bin/busybox (busybox-static; cargo xtask setup installs it)");
        for tool in ["sh", "ip", "ping", "nc", "sleep", "timeout", "echo", "cat"] {
            let link = bin.join(tool);
            if !link.exists() {
                std::os::unix::fs::symlink("busybox", link).unwrap();
            }
        }
        root.display().to_string()
    }

    /// `podman run -d` of `command` (a shell line) as `name` on `network`.
    fn run(&self, name: &str, network: &str, command: &str) {
        let rootfs = self.rootfs(name);
        ok(&self.cmd(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            network,
            "--cap-add",
            "NET_RAW",
            // --rootfs takes no value: the directory is the first positional.
            "--rootfs",
            &rootfs,
            "/bin/sh",
            "-c",
            command,
        ]));
    }

    fn exec(&self, name: &str, command: &str) -> Output {
        self.cmd(&["exec", name, "/bin/sh", "-c", command])
    }

    fn address(&self, name: &str) -> String {
        let out = ok(&self.exec(name, "ip -4 -o addr show dev eth0"));
        out.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|cidr| cidr.strip_suffix("/32"))
            .unwrap_or_else(|| panic!("no /32 address in {out}"))
            .to_owned()
    }

    fn pings(&self, from: &str, to: &str) -> bool {
        self.exec(from, &format!("ping -c 1 -W 1 {to}"))
            .status
            .success()
    }

    fn pings_eventually(&self, from: &str, to: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.pings(from, to) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            sleep(Duration::from_millis(200));
        }
    }

    /// One line over TCP from `to`'s port 8080.
    fn tcp(&self, from: &str, to: &str) -> String {
        String::from_utf8_lossy(
            &self
                .exec(from, &format!("timeout 5 nc {to} 8080 </dev/null"))
                .stdout,
        )
        .trim()
        .to_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd(&["rm", "--all", "--force", "--time", "0"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP server answering `hello-from-<name>` on port 8080, forever.
fn server(name: &str) -> String {
    format!("while true; do echo hello-from-{name} | nc -l -p 8080; done")
}

#[test]
fn podman_containers_on_two_lab_hosts() {
    require_root_and_bpffs();
    let (lab, _) = Lab::up("pm", 2);
    let (lab_name, dir) = (lab.name.clone(), lab.dir.clone());
    let store = format!("file://{dir}/state.json");
    // The plugin, the conflists and podman's state: removed on drop (after
    // podman, before the lab). A short path: podman refuses a run root
    // longer than 50 characters.
    let work = tempfile::Builder::new().prefix("nfcni-").tempdir().unwrap();
    let net_dir = work.path().join("net.d");
    let bin_dir = work.path().join("bin");
    let h = |n: u8| format!("{lab_name}-h{n}");
    // One network per lab host: podman runs in this namespace, the plugin
    // puts the host side of each port into the host's.
    let network = |n: u8| format!("{lab_name}-n{n}");
    for n in [1, 2] {
        ok(&nf(&[
            "--store",
            &store,
            "cni",
            "install",
            "--host",
            &h(n),
            "--network",
            &network(n),
            "--default-owner",
            "alice",
            "--host-netns",
            &format!("/run/netns/nf-{}", h(n)),
            "--plugin",
            CNI,
            "--bin-dir",
            bin_dir.to_str().unwrap(),
            "--conf-dir",
            net_dir.to_str().unwrap(),
        ]));
    }
    let podman = Podman::new(&work.path().join("podman"), &net_dir, &bin_dir);
    let c = |base: &str| format!("{lab_name}-{base}");
    let (a1, a2, b1) = (c("a1"), c("a2"), c("b1"));
    // bob's container exists in the store first: podman's container name
    // finds it (and its owner); alice's are created by the network's default.
    let b1_address = ok(&nf(&[
        "--store",
        &store,
        "container",
        "create",
        &b1,
        "--owner",
        "bob",
        "--host",
        &h(1),
    ]))
    .trim()
    .to_owned();
    podman.run(&a1, &network(1), &server(&a1));
    podman.run(&a2, &network(2), &server(&a2));
    podman.run(&b1, &network(1), &server(&b1));
    let list: serde_json::Value = serde_json::from_str(&ok(&nf(&[
        "--store",
        &store,
        "container",
        "list",
        "-o",
        "json",
    ])))
    .unwrap();
    let in_store = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .map(|x| {
                (
                    x["owner"].as_str().unwrap().to_owned(),
                    x["host"].as_str().unwrap().to_owned(),
                    x["address"].as_str().unwrap().to_owned(),
                )
            })
            .unwrap_or_else(|| panic!("{name} is not in the store: {list}"))
    };
    let (a1_ip, a2_ip) = (podman.address(&a1), podman.address(&a2));
    assert_eq!(in_store(&a1), ("alice".into(), h(1), a1_ip.clone()));
    assert_eq!(in_store(&a2), ("alice".into(), h(2), a2_ip.clone()));
    assert_eq!(in_store(&b1), ("bob".into(), h(1), b1_address.clone()));
    assert_eq!(podman.address(&b1), b1_address);

    // Same owner on two hosts: ping and TCP, both ways.
    assert!(
        podman.pings_eventually(&a1, &a2_ip),
        "a1 -> a2 (alice, h1 -> h2)"
    );
    assert!(podman.pings_eventually(&a2, &a1_ip), "a2 -> a1");
    assert_eq!(podman.tcp(&a1, &a2_ip), format!("hello-from-{a2}"));
    assert_eq!(podman.tcp(&a2, &a1_ip), format!("hello-from-{a1}"));
    // Different owners: denied, across hosts and on one host.
    // bob's port is up (it reaches bob's attached container), so what
    // follows is the policy's doing, not a port still down.
    assert!(
        podman.pings_eventually(&b1, &in_store(&c("bob-web")).2),
        "b1 -> attached bob-web"
    );
    assert!(!podman.pings(&b1, &a2_ip), "bob -> alice across hosts");
    assert!(!podman.pings(&b1, &a1_ip), "bob -> alice on one host");
    assert!(!podman.pings(&a1, &b1_address), "alice -> bob on one host");
    assert_eq!(podman.tcp(&b1, &a2_ip), "", "bob's TCP to alice");
    // A podman container and `container attach` containers of one owner
    // (the lab's alice-web on h1, alice-db on h2) talk; bob's do not.
    let lab_ns = |base: &str| format!("nf-{lab_name}-{base}");
    let lab_ip = |base: &str| in_store(&c(base)).2;
    assert!(
        podman.pings(&a1, &lab_ip("alice-db")),
        "a1 -> attached alice-db"
    );
    assert!(
        ping(&lab_ns("alice-web"), &a2_ip, 1),
        "attached alice-web -> a2"
    );
    let tcp = ok(&in_ns(
        &lab_ns("alice-web"),
        &format!("nc -w 2 {a2_ip} 8080 </dev/null"),
    )
    .output()
    .unwrap());
    assert_eq!(tcp.trim(), format!("hello-from-{a2}"));
    assert!(
        !ping(&lab_ns("bob-web"), &a2_ip, 1),
        "attached bob-web -> a2"
    );
    assert!(
        !podman.pings(&a1, &lab_ip("bob-web")),
        "a1 -> attached bob-web"
    );

    // `podman restart` keeps the address, and the traffic.
    ok(&podman.cmd(&["restart", "--time", "0", &a2]));
    assert_eq!(podman.address(&a2), a2_ip, "restart kept the address");
    assert!(
        podman.pings_eventually(&a1, &a2_ip),
        "a1 -> a2 after restart"
    );
    assert_eq!(podman.tcp(&a1, &a2_ip), format!("hello-from-{a2}"));

    // `podman rm` and `podman run` under the same name: the same address.
    ok(&podman.cmd(&["rm", "--force", "--time", "0", &a1]));
    podman.run(&a1, &network(1), &server(&a1));
    assert_eq!(
        podman.address(&a1),
        a1_ip,
        "re-created container kept the address"
    );
    assert!(podman.pings_eventually(&a2, &a1_ip), "a2 -> re-created a1");

    // `podman rm -f` leaves no veth, no namespace, no route and no stale
    // map entry (the container stays in the store until `container delete`).
    let sandbox = ok(&podman.cmd(&[
        "inspect",
        "--format",
        "{{.NetworkSettings.SandboxKey}}",
        &a2,
    ]))
    .trim()
    .to_owned();
    assert!(Path::new(&sandbox).exists(), "{sandbox}");
    let a2_id = ok(&podman.cmd(&["inspect", "--format", "{{.Id}}", &a2]))
        .trim()
        .to_owned();
    let port = format!("nfc{}", a2_ip.rsplit('.').next().unwrap());
    let h2_ns = format!("nf-{}", h(2));
    let links = || {
        ok(&Command::new("ip")
            .args(["-n", &h2_ns, "-o", "link"])
            .output()
            .unwrap())
    };
    let local_ports = || {
        ok(&nf(&[
            "--store",
            &store,
            "maps",
            "dump",
            "LOCAL_PORTS",
            "--host",
            &h(2),
            "-o",
            "json",
        ]))
    };
    let pins = || {
        ok(&Command::new("ls")
            .arg(format!("/sys/fs/bpf/netfabric/{}/links", h(2)))
            .output()
            .unwrap())
    };
    // libcni's result cache (the runtime's, outside the test's directories).
    let cached = || {
        std::fs::read_dir("/var/lib/cni/results")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(&a2_id))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let a2_quoted = format!("\"{a2_ip}\"");
    // What rm must remove is there while a2 runs.
    assert!(links().contains(&format!("{port}@")), "{}", links());
    assert!(local_ports().contains(&a2_quoted), "{}", local_ports());
    assert!(pins().contains(&format!("{port}-ingress")), "{}", pins());
    assert!(!cached().is_empty(), "no libcni cache entry for a2");
    ok(&podman.cmd(&["rm", "--force", "--time", "0", &a2]));
    assert!(
        !links().contains(&format!("{port}@")),
        "a veth is left: {}",
        links()
    );
    assert!(
        !Path::new(&sandbox).exists(),
        "the namespace {sandbox} is left"
    );
    let routes = ok(&Command::new("ip")
        .args(["-n", &h2_ns, "-4", "route", "show", "table", "all"])
        .output()
        .unwrap());
    assert!(!routes.contains(&a2_ip), "a route is left: {routes}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while (local_ports().contains(&a2_quoted) || pins().contains(&format!("{port}-")))
        && Instant::now() < deadline
    {
        sleep(Duration::from_millis(100));
    }
    assert!(
        !local_ports().contains(&a2_quoted),
        "LOCAL_PORTS keeps a2: {}",
        local_ports()
    );
    assert!(
        !pins().contains(&format!("{port}-")),
        "pinned links left: {}",
        pins()
    );
    assert!(cached().is_empty(), "libcni's cache keeps {:?}", cached());
    assert_eq!(in_store(&a2).2, a2_ip, "DEL must not delete the container");
    drop(podman);
    drop(work);
    drop(lab);
}
