//! The Kubernetes manifests agree with the binary: the port it listens on, the probe and
//! metrics paths it serves, the environment variables it reads, the services it runs.
//!
//! The manifests are read as written (`deploy/k8s/base`), not rendered: this runs in a
//! plain `cargo test`, where kubectl may not be installed. `.ci/run` renders every overlay
//! and validates the result against the Kubernetes schemas.
//!
//! A test binary of its own: checking a variable sets it in this process's environment
//! for a moment (`figment::Jail`), which must not leak into children other tests spawn.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oxcart::App;
use oxcart::config::{Config, Service, Services};
use oxcart_events::bus::topics;
use oxcart_platform::http::HttpConfig;
use oxcart_test_util::api::Api;
use serde::Deserialize as _;
use serde_yaml::Value;
use tokio_util::sync::CancellationToken;

/// The app on a free port with its own SQLite database, for the paths it serves.
struct TestApp {
    api: Api,
    _dir: tempfile::TempDir,
    _shutdown: tokio_util::sync::DropGuard,
}

impl TestApp {
    async fn spawn() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_owned(),
            http: HttpConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                ..HttpConfig::default()
            },
            ..Config::default()
        };
        let app = App::build(config).await.unwrap();
        let api = Api::new(app.local_addr());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run(shutdown.clone()));
        Self {
            api,
            _dir: dir,
            _shutdown: shutdown.drop_guard(),
        }
    }
}

fn base() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/k8s/base")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One environment variable as a manifest sets it: a value, or a reference to a Secret
/// or a field, for which `sample` stands in.
#[derive(Debug, Clone)]
struct Variable {
    name: String,
    value: String,
    /// Where it is set, for messages.
    place: String,
}

/// A container's variables: its `env` list (literal values, and a sample for references).
fn env_of(container: &Value, place: &str) -> Vec<Variable> {
    let Some(list) = container["env"].as_sequence() else {
        return Vec::new();
    };
    list.iter()
        .map(|var| Variable {
            name: var["name"].as_str().unwrap().to_owned(),
            value: var["value"]
                .as_str()
                .map_or_else(|| sample(var["name"].as_str().unwrap()), str::to_owned),
            place: place.to_owned(),
        })
        .collect()
}

/// A plausible value for a variable whose value comes from a Secret.
fn sample(name: &str) -> String {
    match name {
        "DATABASE_URL" | "DATABASE_MIGRATION_URL" => {
            "postgres://oxcart@pgbouncer:6432/oxcart".into()
        }
        "SMTP_URL" => "smtp://relay:587?tls=required".into(),
        _ => "from-a-secret".into(),
    }
}

/// What the manifests set, per Deployment (keyed by the service it runs).
struct Manifests {
    template: Value,
    config: BTreeMap<String, String>,
    /// Per service directory: the `app` label, the container's args and its env.
    services: BTreeMap<String, (String, Vec<String>, Vec<Variable>)>,
    migrate: Value,
}

impl Manifests {
    fn read(base: &Path) -> Self {
        let template = yaml(&base.join("service/deployment.yaml"));
        let config = yaml(&base.join("config.yaml"))["data"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().unwrap().to_owned(),
                    v.as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let mut services = BTreeMap::new();
        for entry in std::fs::read_dir(base.join("services")).unwrap() {
            let dir = entry.unwrap().path();
            let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
            let kustomization = yaml(&dir.join("kustomization.yaml"));
            let app = kustomization["labels"][0]["pairs"]["app"]
                .as_str()
                .unwrap()
                .to_owned();
            let patch: Value =
                serde_yaml::from_str(kustomization["patches"][0]["patch"].as_str().unwrap())
                    .unwrap();
            let container = &patch["spec"]["template"]["spec"]["containers"][0];
            let args = container["args"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect();
            let env = env_of(container, &format!("services/{name}"));
            services.insert(name, (app, args, env));
        }
        let migrate = yaml(&base.join("migrate.yaml"));
        Self {
            template,
            config,
            services,
            migrate,
        }
    }

    fn container(&self) -> &Value {
        &self.template["spec"]["template"]["spec"]["containers"][0]
    }

    /// Every variable a service's container gets: the ConfigMap, the template's env, the
    /// service's own (which win, as a strategic merge by name does).
    fn env(&self, service: &str) -> Vec<Variable> {
        let mut all: BTreeMap<String, Variable> = BTreeMap::new();
        for (name, value) in &self.config {
            let place = "config.yaml".to_owned();
            all.insert(
                name.clone(),
                Variable {
                    name: name.clone(),
                    value: value.clone(),
                    place,
                },
            );
        }
        for var in env_of(self.container(), "service/deployment.yaml") {
            all.insert(var.name.clone(), var);
        }
        for var in &self.services[service].2 {
            all.insert(var.name.clone(), var.clone());
        }
        all.into_values().collect()
    }
}

/// The problems with `vars`: each must be a setting the binary reads, with a value it
/// accepts, or a variable only used inside another's value (`$(POD_NAME)`).
fn unread(vars: &[Variable]) -> Vec<String> {
    let baseline = format!("{:?}", load(&[]).expect("the defaults load"));
    let mut problems = Vec::new();
    for var in vars {
        let name = var.name.as_str();
        if oxcart_platform::telemetry::VARIABLES.contains(&name) {
            continue;
        }
        let interpolated = format!("$({name})");
        if vars.iter().any(|other| other.value.contains(&interpolated)) {
            continue;
        }
        match load(&[(name, &var.value)]) {
            Err(error) => problems.push(format!(
                "{}: {name}={}: refused: {error}",
                var.place, var.value
            )),
            Ok(config) if format!("{config:?}") == baseline => {
                problems.push(format!(
                    "{}: {name} is not a setting oxcart reads",
                    var.place
                ));
            }
            Ok(_) => {}
        }
    }
    problems
}

/// The configuration the binary would load with `vars` set.
#[expect(
    clippy::result_large_err,
    reason = "figment::Jail decides its closures' error type"
)]
fn load(vars: &[(&str, &str)]) -> Result<Config, String> {
    let mut loaded = Err(String::new());
    figment::Jail::expect_with(|jail| {
        for (name, value) in vars {
            jail.set_env(name, value);
        }
        loaded = Config::load(None, serde_json::json!({})).map_err(|e| e.to_string());
        Ok(())
    });
    loaded
}

/// The probe paths, the metrics path and the port of `manifests`, as a problem list.
async fn unserved(manifests: &Manifests, app: &TestApp) -> Vec<String> {
    let mut problems = Vec::new();
    let container = manifests.container();
    let port = container["ports"][0]["containerPort"].as_u64().unwrap();
    let listen = &manifests.config["OXCART_HTTP__LISTEN"];
    if !listen.ends_with(&format!(":{port}")) {
        problems.push(format!(
            "containerPort {port}, but OXCART_HTTP__LISTEN is {listen}"
        ));
    }
    let annotations = &manifests.template["spec"]["template"]["metadata"]["annotations"];
    if annotations["prometheus.io/port"].as_str() != Some(&port.to_string()) {
        problems.push(format!(
            "prometheus.io/port is not the containerPort {port}"
        ));
    }
    let mut paths = vec![
        annotations["prometheus.io/path"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        paths.push(
            container[probe]["httpGet"]["path"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for path in paths {
        let status = app.api.get(&path, None).await.status;
        if status != 200 {
            problems.push(format!("{path} answers {}", status.as_u16()));
        }
    }
    problems
}

#[tokio::test]
async fn the_manifests_use_what_the_binary_serves_and_reads() {
    let manifests = Manifests::read(&base());
    let app = TestApp::spawn().await;
    let mut problems = unserved(&manifests, &app).await;

    let mut deployed = Vec::new();
    for (dir, (app_label, args, _)) in &manifests.services {
        let env = manifests.env(dir);
        problems.extend(unread(&env));
        // `serve --services <name>`: a service the binary has, and the one the directory
        // and the trace's service name say.
        let services: Services = args[2].parse().unwrap_or_else(|e| panic!("{dir}: {e}"));
        deployed.extend(services.iter());
        assert_eq!(args[..2], ["serve", "--services"], "{dir}");
        assert_eq!(args[2], *dir, "services/{dir} runs its own service");
        let named = env.iter().find(|v| v.name == "OTEL_SERVICE_NAME").unwrap();
        assert_eq!(
            named.value, *app_label,
            "{dir}: traces are named as the app label"
        );
    }
    deployed.sort();
    assert_eq!(
        deployed,
        Service::ALL.to_vec(),
        "each service deployed exactly once"
    );

    let job = &manifests.migrate["spec"]["template"]["spec"]["containers"][0];
    problems.extend(unread(&env_of(job, "migrate.yaml")));
    assert_eq!(job["args"][0].as_str(), Some("migrate"));

    assert!(
        problems.is_empty(),
        "the manifests disagree with the binary:\n{}",
        problems.join("\n")
    );
}

/// The check has teeth: a misspelt variable, a value the binary refuses, and a probe on a
/// path it does not serve are all reported.
#[tokio::test]
async fn a_manifest_that_disagrees_is_caught() {
    let var = |name: &str, value: &str| Variable {
        name: name.to_owned(),
        value: value.to_owned(),
        place: "fixture".to_owned(),
    };
    let problems = unread(&[
        var("OXCART_HTTP__LISTN", "0.0.0.0:8080"),
        var("OXCART_HTTP__REQUEST_TIMEOUT", "soon"),
        var("OXCART_HTTP__LISTEN", "0.0.0.0:8080"),
        var("OTEL_SERVICE_NAME", "user-service"),
    ]);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains(
            "`OXCART_HTTP__LISTN` is not a setting (did you mean `OXCART_HTTP__LISTEN`?)"
        ),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("OXCART_HTTP__REQUEST_TIMEOUT=soon: refused"),
        "{problems:?}"
    );

    let mut manifests = Manifests::read(&base());
    let probe =
        &mut manifests.template["spec"]["template"]["spec"]["containers"][0]["readinessProbe"];
    probe["httpGet"]["path"] = Value::from("/healthz");
    let app = TestApp::spawn().await;
    let problems = unserved(&manifests, &app).await;
    assert_eq!(problems, ["/healthz answers 404"]);
}

/// Every operation of the API: (service, method, route template), from the OpenAPI
/// document the binary serves (each operation is tagged with its service).
fn operations() -> Vec<(String, String, String)> {
    let doc: serde_json::Value =
        serde_json::from_str(&oxcart::openapi(&Services::all()).to_json().unwrap()).unwrap();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if let Some(tag) = op["tags"][0].as_str() {
                ops.push((tag.to_owned(), method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(ops.len() > 15, "read the operations");
    ops
}

/// Whether an Istio path (exact, or a prefix ending in `*`) covers a route template.
fn covers(pattern: &str, route: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => route.starts_with(prefix) && route.len() > prefix.len(),
        None => pattern == route,
    }
}

/// Every document of a multi-document YAML file.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

fn istio() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/istio");
    ["gateway.yaml", "traffic.yaml", "security.yaml"]
        .iter()
        .flat_map(|file| documents(&dir.join(file)))
        .collect()
}

/// The (principal, methods, paths) an AuthorizationPolicy allows.
fn allowed(policy: &Value) -> Vec<(String, Vec<String>, Vec<String>)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_sequence()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let mut out = Vec::new();
    for rule in policy["spec"]["rules"].as_sequence().unwrap() {
        for principal in strings(&rule["from"][0]["source"]["principals"]) {
            let operation = &rule["to"][0]["operation"];
            out.push((
                principal,
                strings(&operation["methods"]),
                strings(&operation["paths"]),
            ));
        }
    }
    out
}

/// The mesh allows exactly what the code does. Through the gateway: every operation of a
/// service's API, and no rule for a route it does not serve; between services: the calls
/// the code makes (`oxcart::CALLS`) and nothing more; and the edge routes each path to the
/// service that serves it.
#[test]
fn the_mesh_allows_what_the_code_serves_and_calls() {
    let manifests = Manifests::read(&base());
    let deployment = |service: &str| manifests.services[service].0.clone();
    let docs = istio();
    let policy = |name: &str| {
        docs.iter()
            .find(|d| d["kind"] == "AuthorizationPolicy" && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no AuthorizationPolicy for {name}"))
    };
    let operations = operations();
    let mut problems = Vec::new();
    for service in Service::ALL {
        let name = deployment(service.name());
        let rules = allowed(policy(&name));
        let gateway: Vec<_> = rules
            .iter()
            .filter(|(p, ..)| p.contains("istio-ingressgateway"))
            .collect();
        let served: Vec<_> = operations
            .iter()
            .filter(|(tag, ..)| tag == service.name())
            .collect();
        for (_, method, route) in &served {
            let ok = gateway.iter().any(|(_, methods, paths)| {
                methods.contains(method) && paths.iter().any(|p| covers(p, route))
            });
            if !ok {
                problems.push(format!(
                    "{name}: the gateway may not {method} {route}, which it serves"
                ));
            }
        }
        for (_, methods, paths) in &gateway {
            for method in methods {
                for path in paths {
                    if !served
                        .iter()
                        .any(|(_, m, r)| m == method && covers(path, r))
                    {
                        problems.push(format!(
                            "{name}: allows {method} {path}, which it does not serve"
                        ));
                    }
                }
            }
        }
        // Between services: exactly the calls the code makes.
        let calls: Vec<_> = oxcart::CALLS.iter().filter(|c| c.to == service).collect();
        let peers: Vec<_> = rules
            .iter()
            .filter(|(p, ..)| p.starts_with("cluster.local/ns/production/sa/"))
            .collect();
        for call in &calls {
            let caller = format!(
                "cluster.local/ns/production/sa/{}",
                deployment(call.from.name())
            );
            let ok = peers.iter().any(|(p, methods, paths)| {
                *p == caller
                    && methods.iter().any(|m| m == call.method)
                    && paths.iter().any(|path| covers(path, call.route))
            });
            if !ok {
                problems.push(format!(
                    "{name}: does not let {caller} {} {}",
                    call.method, call.route
                ));
            }
        }
        if peers.len() != calls.len() {
            problems.push(format!(
                "{name}: {} rules for other services, {} calls in the code",
                peers.len(),
                calls.len()
            ));
        }
    }
    // The edge sends every served path to its service.
    let edge = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "oxcart-edge")
        .unwrap();
    for (tag, method, route) in &operations {
        let target = edge["spec"]["http"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|r| {
                r["match"].as_sequence().unwrap().iter().any(|m| {
                    m["uri"]["exact"].as_str() == Some(route.as_str())
                        || m["uri"]["prefix"]
                            .as_str()
                            .is_some_and(|p| route.starts_with(p))
                })
            });
        let host = target.and_then(|r| r["route"][0]["destination"]["host"].as_str());
        if host != Some(deployment(tag).as_str()) {
            problems.push(format!(
                "the edge sends {method} {route} to {host:?}, not {}",
                deployment(tag)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the mesh disagrees with the code:\n{}",
        problems.join("\n")
    );
}

#[test]
fn istio_paths_cover_route_templates_as_istio_matches_them() {
    assert!(covers("/api/orders/*", "/api/orders/{id}/cancel"));
    assert!(!covers("/api/orders/*", "/api/orders"));
    assert!(covers("/api/orders", "/api/orders"));
    assert!(!covers("/api/orders", "/api/orders/{id}"));
}

/// The kinds of every object in the YAML files of `dirs` (Kustomizations aside).
fn kinds_in(dirs: &[PathBuf]) -> std::collections::BTreeSet<(String, String)> {
    let mut kinds = std::collections::BTreeSet::new();
    for dir in dirs {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            for doc in documents(&path) {
                let (Some(api), Some(kind)) = (doc["apiVersion"].as_str(), doc["kind"].as_str())
                else {
                    continue;
                };
                if kind != "Kustomization" {
                    let group = api.rsplit_once('/').map_or("", |(group, _)| group);
                    kinds.insert((group.to_owned(), kind.to_owned()));
                }
            }
        }
    }
    kinds
}

/// Argo CD's project lets the production application create exactly the kinds the
/// production overlay deploys: a kind left out fails the sync, one too many is a door
/// left open. And the application deploys that overlay.
#[test]
fn the_argocd_project_admits_exactly_what_production_deploys() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let production = kinds_in(&[
        deploy.join("k8s/base"),
        deploy.join("k8s/base/service"),
        deploy.join("istio"),
        deploy.join("rollouts"),
    ]);
    let project = yaml(&deploy.join("argocd/appproject.yaml"));
    let listed = |key: &str| -> std::collections::BTreeSet<(String, String)> {
        project["spec"][key]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["group"].as_str().unwrap().to_owned(),
                    k["kind"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(listed("namespaceResourceWhitelist"), production);
    assert_eq!(
        listed("clusterResourceWhitelist"),
        [(String::new(), "Namespace".to_owned())].into()
    );
    let application = yaml(&deploy.join("argocd/application.yaml"));
    let path = application["spec"]["source"]["path"].as_str().unwrap();
    assert!(
        deploy
            .join("..")
            .join(path)
            .join("kustomization.yaml")
            .exists(),
        "{path}"
    );
    assert_eq!(application["spec"]["project"], project["metadata"]["name"]);
    assert_eq!(
        application["spec"]["destination"]["namespace"],
        project["spec"]["destinations"][0]["namespace"]
    );
}

/// The topics deploy/kafka creates are the code's topics and their dead-letter topics.
#[test]
fn kafka_topics_are_the_codes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kafka/kafka.yaml");
    let job = documents(&path)
        .into_iter()
        .find(|d| d["kind"] == "Job")
        .unwrap();
    let env = &job["spec"]["template"]["spec"]["containers"][0]["env"];
    let listed: std::collections::BTreeSet<&str> =
        env[0]["value"].as_str().unwrap().split(' ').collect();
    let code: Vec<String> = topics::ALL
        .iter()
        .flat_map(|topic| [(*topic).to_owned(), topics::dead_letter(topic)])
        .collect();
    let code: std::collections::BTreeSet<&str> = code.iter().map(String::as_str).collect();
    assert_eq!(listed, code);
}

/// Every service is released by Argo Rollouts: canaries for most, blue-green for one.
/// The blue-green one has its preview Service, reached with `x-version: v2`, and is
/// promoted only after the canaries' own success-rate query, run on its preview pods,
/// comes to an end.
#[test]
fn every_service_is_released_by_canary_or_blue_green_on_one_metric() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/rollouts");
    let rollouts = documents(&dir.join("rollouts.yaml"));
    let analyses = documents(&dir.join("analysis.yaml"));
    let template = |name: &str| {
        analyses
            .iter()
            .find(|a| a["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no AnalysisTemplate {name}"))
    };
    let manifests = Manifests::read(&base());
    let mut blue_green = Vec::new();
    for service in Service::ALL {
        let name = manifests.services[service.name()].0.clone();
        let rollout = rollouts
            .iter()
            .find(|r| r["kind"] == "Rollout" && r["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} has no Rollout"));
        let strategy = &rollout["spec"]["strategy"];
        if strategy["canary"].is_mapping() {
            let analysis = &strategy["canary"]["analysis"];
            template(analysis["templates"][0]["templateName"].as_str().unwrap());
            continue;
        }
        let strategy = &strategy["blueGreen"];
        assert_eq!(strategy["activeService"], name.as_str());
        let preview = strategy["previewService"].as_str().unwrap();
        assert!(
            rollouts
                .iter()
                .any(|d| d["kind"] == "Service" && d["metadata"]["name"] == preview),
            "{name}: no preview Service {preview}"
        );
        let traffic = istio()
            .into_iter()
            .find(|d| d["kind"] == "VirtualService" && d["metadata"]["name"] == name.as_str())
            .unwrap();
        assert_eq!(
            traffic["spec"]["http"][0]["route"][0]["destination"]["host"], preview,
            "{name}: x-version: v2 must reach the preview"
        );
        let gate = template(
            strategy["prePromotionAnalysis"]["templates"][0]["templateName"]
                .as_str()
                .unwrap(),
        );
        let metric = &gate["spec"]["metrics"][0];
        assert!(
            metric["count"].as_u64().unwrap() > 0,
            "a pre-promotion analysis must end"
        );
        assert_eq!(
            metric["provider"],
            template("success-rate")["spec"]["metrics"][0]["provider"],
            "the preview is judged by the canaries' query"
        );
        blue_green.push(name);
    }
    assert_eq!(blue_green, ["analytics-service"]);
}
