//! Reconcile scenarios against the mock API server (see `fixtures`).

use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use serde_json::{json, Value};

use super::extension::Extension;
use super::*;
use crate::crd::{LakeClusterStatus, ReclaimPolicy, ServiceType};
use crate::fixtures::{finish, path, ApiServer, Exchange, NAME, NS};
use crate::resources::{Cluster, APPLIED_HASH_ANNOTATION, COMPONENT_LABEL};

/// An owned object: where it lives and what the operator applies there.
struct Owned {
    path: String,
    desired: Value,
}

/// The objects `apply` ensures, in its order.
fn owned(lc: &LakeCluster) -> Vec<Owned> {
    let c = Cluster::new(lc).unwrap();
    let v = |o: serde_json::Result<Value>| o.unwrap();
    let mut out = vec![
        Owned {
            path: path::core("serviceaccounts", NAME),
            desired: v(serde_json::to_value(
                resources::service_account(&c).unwrap(),
            )),
        },
        Owned {
            path: path::core("configmaps", "lake-config"),
            desired: v(serde_json::to_value(resources::config_map(&c).unwrap())),
        },
        Owned {
            path: path::core("services", "lake-pods"),
            desired: v(serde_json::to_value(
                resources::headless_service(&c).unwrap(),
            )),
        },
        Owned {
            path: path::core("services", "lake-rw"),
            desired: v(serde_json::to_value(resources::rw_service(&c).unwrap())),
        },
        Owned {
            path: path::group("apps/v1", "statefulsets", NAME),
            desired: v(serde_json::to_value(resources::stateful_set(&c).unwrap())),
        },
        Owned {
            path: path::group("policy/v1", "poddisruptionbudgets", NAME),
            desired: v(serde_json::to_value(
                resources::pod_disruption_budget(&c).unwrap(),
            )),
        },
        Owned {
            path: path::group("networking.k8s.io/v1", "networkpolicies", NAME),
            desired: v(serde_json::to_value(resources::network_policy(&c).unwrap())),
        },
    ];
    if lc.spec.catalog.enabled {
        out.push(Owned {
            path: path::group("apps/v1", "deployments", "lake-catalog"),
            desired: v(serde_json::to_value(
                resources::catalog_deployment(&c).unwrap(),
            )),
        });
        out.push(Owned {
            path: path::core("services", "lake-catalog"),
            desired: v(serde_json::to_value(
                resources::catalog_service(&c).unwrap(),
            )),
        });
    }
    out
}

/// Kinds whose spec changes the API server counts in `metadata.generation`.
const GENERATION_KINDS: [&str; 4] = [
    "StatefulSet",
    "Deployment",
    "PodDisruptionBudget",
    "NetworkPolicy",
];

/// "Kind/name", as the operator remembers and reports objects.
fn key_of(obj: &Value) -> String {
    format!(
        "{}/{}",
        obj["kind"].as_str().unwrap(),
        obj["metadata"]["name"].as_str().unwrap()
    )
}

/// A context that remembers a full apply of `lc`'s objects `ago` before now,
/// leaving each object that has a generation at `generation`.
fn remembering(lc: &LakeCluster, generation: i64, ago: Duration) -> (Arc<Context>, ApiServer) {
    let (ctx, server, _) = Context::test();
    let generations = owned(lc)
        .iter()
        .filter(|o| GENERATION_KINDS.contains(&o.desired["kind"].as_str().unwrap()))
        .map(|o| (key_of(&o.desired), generation))
        .collect();
    let at = Instant::now()
        .checked_sub(ago)
        .expect("the monotonic clock has run that long");
    ctx.applied().insert(
        applied_key(lc),
        Applied {
            full_at: Some(at),
            generations,
        },
    );
    (ctx, server)
}

/// A context as the operator's after a full apply just now (the hash shortcut applies).
fn just_applied(lc: &LakeCluster, generation: i64) -> (Arc<Context>, ApiServer) {
    remembering(lc, generation, Duration::ZERO)
}

/// `obj` as the API server holds it: at `generation` (if its kind has one), with a settled status.
fn settled(mut obj: Value, generation: i64) -> Value {
    if GENERATION_KINDS.contains(&obj["kind"].as_str().unwrap()) {
        obj["metadata"]["generation"] = json!(generation);
    }
    match obj["kind"].as_str() {
        Some("StatefulSet") => {
            obj["status"] = json!({
                "observedGeneration": generation, "replicas": 1, "readyReplicas": 1,
                "updatedReplicas": 1, "currentRevision": "lake-1", "updateRevision": "lake-1",
            })
        }
        Some("Deployment") => {
            obj["status"] = json!({"observedGeneration": generation, "availableReplicas": 1})
        }
        _ => {}
    }
    obj
}

/// `obj` right after a spec change: new generation, status of the old pods.
fn rolling(mut obj: Value, generation: i64) -> Value {
    obj = settled(obj, generation - 1);
    if obj["metadata"].get("generation").is_some() {
        obj["metadata"]["generation"] = json!(generation);
    }
    obj
}

/// `obj` at `generation` with a settled status, at `resource_version`.
fn stored(obj: Value, generation: i64, resource_version: &str) -> Value {
    let mut obj = settled(obj, generation);
    obj["metadata"]["resourceVersion"] = json!(resource_version);
    obj
}

/// A Secret as the API server returns it: base64 `data`, here of `keys` (each
/// value is `KEY_VALUE`, which must never show anywhere).
fn secret_reply(name: &str, keys: &[&str]) -> Value {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        data: Some(
            keys.iter()
                .map(|k| {
                    let value = k8s_openapi::ByteString(KEY_VALUE.as_bytes().to_vec());
                    (k.to_string(), value)
                })
                .collect(),
        ),
        ..Default::default()
    };
    serde_json::to_value(secret).unwrap()
}

const KEY_VALUE: &str = "hunter2-do-not-show";

/// The S3 keys Secret `LakeCluster::test()` names, read before anything is applied.
fn keys_secret() -> Exchange {
    Exchange::get(path::core("secrets", "s3-keys"))
        .reply(secret_reply("s3-keys", &["accessKeyId", "secretAccessKey"]))
}

fn existing_secret() -> Exchange {
    Exchange::get(path::core("secrets", "lake-superuser"))
        .reply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "lake-superuser", "namespace": NS}}))
}

fn existing_token() -> Exchange {
    Exchange::get(path::core("secrets", "lake-catalog-token"))
        .reply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "lake-catalog-token", "namespace": NS}}))
}

/// GETs answered with each object as it stands, settled at `generation`.
fn unchanged_gets(objects: &[Owned], generation: i64) -> Vec<Exchange> {
    objects
        .iter()
        .map(|o| Exchange::get(&o.path).reply(settled(o.desired.clone(), generation)))
        .collect()
}

/// The status of a cluster whose every part is ready at `generation`.
fn ready_status(lc: &LakeCluster) -> LakeClusterStatus {
    let c = Cluster::new(lc).unwrap();
    let generation = lc.metadata.generation.unwrap();
    let objects = owned(lc);
    let find = |kind: &str| {
        objects
            .iter()
            .find(|o| o.desired["kind"] == kind)
            .unwrap()
            .desired
            .clone()
    };
    let sts: StatefulSet =
        serde_json::from_value(settled(find("StatefulSet"), generation)).unwrap();
    let dep: Deployment = serde_json::from_value(settled(find("Deployment"), generation)).unwrap();
    let installed = Extension::Installed(lc.spec.extension_version().into());
    let at = Timestamp::from_second(1_700_000_000).unwrap();
    next_status(
        &c,
        &LakeClusterStatus::default(),
        &sts,
        Some(&dep),
        &installed,
        at,
    )
}

fn condition_of<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
}

fn env_of<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name}"))
}

/// Every env entry that names a credential comes from a Secret, never inline.
fn assert_no_inline_credentials(pod_spec: &Value) {
    for container in pod_spec["containers"].as_array().unwrap() {
        for env in container["env"].as_array().into_iter().flatten() {
            let name = env["name"].as_str().unwrap();
            if name.contains("PASSWORD")
                || name.contains("SECRET")
                || name.starts_with("AWS_ACCESS")
            {
                assert!(
                    env.get("value").is_none(),
                    "{name} is inline in {}",
                    container["name"]
                );
                assert!(
                    env["valueFrom"]["secretKeyRef"]["name"].is_string(),
                    "{name}"
                );
            }
        }
    }
}

fn capture(slot: &Arc<Mutex<Option<Value>>>) -> impl FnOnce(&Value) + Send + 'static {
    let slot = slot.clone();
    move |body| *slot.lock().unwrap() = Some(body.clone())
}

/// The status apply; the reply is the cluster with that status, as the API server answers.
fn status_apply(slot: &Arc<Mutex<Option<Value>>>) -> Exchange {
    Exchange::apply(path::status_subresource())
        .check(capture(slot))
        .reply_with(|body| {
            let mut lc = serde_json::to_value(LakeCluster::test()).unwrap();
            lc["status"] = body["status"].clone();
            lc
        })
}

fn event(reason: &'static str, note_contains: &'static str) -> Exchange {
    Exchange::new(Method::POST, path::events())
        .echo()
        .check(move |body| {
            assert_eq!(body["reason"], reason, "{body}");
            assert_eq!(body["regarding"]["name"], NAME);
            assert_eq!(body["reportingController"], crate::MANAGER);
            let note = body["note"].as_str().unwrap();
            assert!(
                note.contains(note_contains),
                "{reason}: {note:?} lacks {note_contains:?}"
            );
        })
}

#[tokio::test]
async fn new_cluster_gets_the_finalizer_first() {
    let (ctx, server, _) = Context::test();
    let lc = LakeCluster::test();
    let reply = serde_json::to_value(lc.clone().finalized()).unwrap();
    let scenario = vec![Exchange::new(Method::PATCH, path::lakecluster())
        .reply(reply)
        .check(|body| {
            assert_eq!(
                body,
                &json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": null},
                    {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
                ])
            );
        })];
    let mock = server.run(scenario);
    let action = reconcile(Arc::new(lc), ctx).await.expect("reconcile");
    assert_eq!(action, Action::await_change());
    finish(mock).await;
}

#[tokio::test]
async fn create_from_scratch_applies_every_object_and_reports_provisioning() {
    let (ctx, server, _) = Context::test();
    let lc = LakeCluster::test().finalized();
    let token_secret = Arc::new(Mutex::new(None));
    let superuser_secret = Arc::new(Mutex::new(None));
    let keep_superuser = capture(&superuser_secret);
    let applied_event = Arc::new(Mutex::new(None));
    let mut scenario = vec![
        keys_secret(),
        Exchange::get(path::core("secrets", "lake-superuser")).not_found(),
        Exchange::new(Method::POST, format!("/api/v1/namespaces/{NS}/secrets"))
            .echo()
            .check(move |body| {
                keep_superuser(body);
                assert_eq!(body["metadata"]["name"], "lake-superuser");
                assert_eq!(body["type"], "kubernetes.io/basic-auth");
                assert_eq!(body["stringData"]["username"], "postgres");
                let password = body["stringData"]["password"].as_str().unwrap();
                assert_eq!(password.len(), 32);
                assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
                // The Secret outlives the cluster, like the data it unlocks.
                assert!(body["metadata"].get("ownerReferences").is_none());
            }),
        // auth defaults to token and the spec names no Secret: one is generated.
        Exchange::get(path::core("secrets", "lake-catalog-token")).not_found(),
        Exchange::new(Method::POST, format!("/api/v1/namespaces/{NS}/secrets"))
            .echo()
            .check(capture(&token_secret)),
    ];
    for o in owned(&lc) {
        let desired = o.desired.clone();
        scenario.push(Exchange::get(&o.path).not_found());
        scenario.push(Exchange::apply(&o.path).check(move |body| {
            assert_eq!(body, &desired);
            let owner = &body["metadata"]["ownerReferences"][0];
            assert_eq!(owner["kind"], "LakeCluster");
            assert_eq!(owner["uid"], "6c4f5b7e-0000-4000-8000-000000000001");
            assert_eq!(owner["controller"], true);
            assert!(body["metadata"]["annotations"][APPLIED_HASH_ANNOTATION].is_string());
            if body["kind"] == "StatefulSet" {
                let pod = &body["spec"]["template"]["spec"];
                let pgduck = &pod["containers"][1];
                assert_eq!(pgduck["name"], "pgduck");
                let args: Vec<String> = serde_json::from_value(pgduck["args"].clone()).unwrap();
                let lc = LakeCluster::test();
                assert_eq!(args, lc.spec.wiring().unwrap().pgduck_args());
                assert_eq!(
                    env_of(&pod["containers"][0], "AWS_REGION")["value"],
                    "eu-west-1"
                );
                assert_eq!(
                    env_of(&pod["containers"][0], "AWS_SECRET_ACCESS_KEY")["valueFrom"]
                        ["secretKeyRef"],
                    json!({"name": "s3-keys", "key": "secretAccessKey", "optional": false})
                );
                assert_no_inline_credentials(pod);
            }
            if body["kind"] == "Deployment" {
                let pod = &body["spec"]["template"]["spec"];
                let catalog = &pod["containers"][0];
                assert_eq!(
                    env_of(catalog, "REST_CATALOG_DATABASE_URL")["value"],
                    "postgres://$(PGUSER)@lake-rw:5432/postgres"
                );
                assert_eq!(env_of(catalog, "REST_CATALOG_AUTH")["value"], "token");
                assert_eq!(
                    env_of(catalog, "REST_CATALOG_TOKENS"),
                    &json!({"name": "REST_CATALOG_TOKENS", "valueFrom": {"secretKeyRef":
                        {"name": "lake-catalog-token", "key": "token", "optional": false}}})
                );
                assert_no_inline_credentials(pod);
            }
        }));
    }
    const CREATED: &str =
        "created Secret/lake-superuser, created Secret/lake-catalog-token, created ServiceAccount/lake";
    let check = event("Applied", CREATED).check;
    let keep = capture(&applied_event);
    scenario.push(event("Applied", CREATED).check(move |body| {
        check(body);
        keep(body);
    }));
    let status = Arc::new(Mutex::new(None));
    scenario.push(status_apply(&status));
    // The next reconcile finds both Secrets and leaves them as they are: no
    // create, no apply, whatever they hold. The objects stand as applied (their
    // pods not ready yet), so it only reads.
    let first_requests = scenario.len();
    scenario.extend([keys_secret(), existing_secret(), existing_token()]);
    scenario.extend(
        owned(&lc)
            .into_iter()
            .map(|o| Exchange::get(&o.path).reply(o.desired)),
    );
    let mock = server.run(scenario);

    let action = reconcile(Arc::new(lc.clone()), ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(action, Action::requeue(CONVERGING));

    let secret = token_secret.lock().unwrap().take().unwrap();
    assert_eq!(secret["metadata"]["name"], "lake-catalog-token");
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["metadata"]["labels"][COMPONENT_LABEL], "catalog");
    // Like the superuser Secret, it outlives the cluster (see cleanup).
    assert!(secret["metadata"].get("ownerReferences").is_none());
    let token = secret["stringData"]["token"].as_str().unwrap().to_string();
    assert!(token.len() >= 43, "{token}");
    assert!(
        token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "not URL-safe: {token}"
    );
    let superuser = superuser_secret.lock().unwrap().take().unwrap();
    let password = superuser["stringData"]["password"].as_str().unwrap();
    let first = status.lock().unwrap().take().unwrap();
    let event = applied_event.lock().unwrap().take().unwrap();
    for shown in [first.to_string(), event.to_string()] {
        assert!(!shown.contains(&token), "the token shows: {shown}");
        assert!(!shown.contains(password), "the password shows: {shown}");
    }

    let lc = lc.with_status(serde_json::from_value(first["status"].clone()).unwrap());
    reconcile(Arc::new(lc), ctx)
        .await
        .expect("second reconcile");
    let seen = finish(mock).await;
    assert!(
        seen[first_requests..]
            .iter()
            .all(|s| s.method == Method::GET),
        "the second reconcile only reads: {:?}",
        &seen[first_requests..]
    );
    let body = first;
    assert_eq!(body["apiVersion"], "pglake.dev/v1alpha1");
    let status = &body["status"];
    assert_eq!(status["phase"], "Provisioning");
    // Where the token is, never what it is.
    assert_eq!(status["catalogTokenSecret"], "lake-catalog-token");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["endpoint"], "lake-rw.testns.svc:5432");
    assert_eq!(status["catalogUrl"], "http://lake-catalog.testns.svc:8181");
    assert_eq!(condition_of(status, READY)["status"], "False");
    assert_eq!(
        condition_of(status, POSTGRES_READY)["reason"],
        "PodsNotReady"
    );
    assert_eq!(
        condition_of(status, EXTENSION_UP_TO_DATE)["reason"],
        "WaitingForRollout"
    );
    assert!(status.get("installedExtensionVersion").is_none());
}

#[tokio::test]
async fn up_to_date_cluster_is_a_no_op() {
    let base = LakeCluster::test().finalized();
    let lc = base.clone().with_status(ready_status(&base));
    let (ctx, server) = just_applied(&lc, 1);
    let mut scenario = vec![keys_secret(), existing_secret(), existing_token()];
    scenario.extend(unchanged_gets(&owned(&lc), 1));
    let mock = server.run(scenario);

    let action = reconcile(Arc::new(lc), ctx).await.expect("reconcile");
    assert_eq!(action, Action::requeue(RESYNC));
    let seen = finish(mock).await;
    assert!(
        seen.iter().all(|s| s.method == Method::GET),
        "a no-op reconcile only reads: {seen:?}"
    );
}

#[tokio::test]
async fn spec_change_patches_only_what_changed() {
    let before = LakeCluster::test().finalized();
    let (ctx, server) = just_applied(&before, 1);
    let after = before
        .clone()
        .with_status(ready_status(&before))
        .changed(|s| {
            s.postgres
                .parameters
                .insert("work_mem".into(), "64MB".into());
            s.service.type_ = ServiceType::LoadBalancer;
        });
    let old = owned(&before);
    let new = owned(&after);
    let mut scenario = vec![keys_secret(), existing_secret(), existing_token()];
    for (o, n) in old.iter().zip(&new) {
        scenario.push(Exchange::get(&o.path).reply(settled(o.desired.clone(), 1)));
        if o.desired != n.desired {
            let desired = n.desired.clone();
            scenario.push(
                Exchange::apply(&n.path)
                    .reply(rolling(n.desired.clone(), 2))
                    .check(move |body| {
                        assert_eq!(body, &desired);
                        match body["kind"].as_str().unwrap() {
                            "ConfigMap" => {
                                assert!(body["data"]["postgresql.conf"]
                                    .as_str()
                                    .unwrap()
                                    .contains("work_mem = '64MB'\n"))
                            }
                            "Service" => assert_eq!(body["spec"]["type"], "LoadBalancer"),
                            // The pod template changes with the config, so the pods roll.
                            "StatefulSet" => assert!(body["spec"]["template"]["metadata"]
                                ["annotations"][resources::CONFIG_HASH_ANNOTATION]
                                .is_string()),
                            other => panic!("{other} should not change"),
                        }
                    }),
            );
        }
    }
    scenario.push(event(
        "Applied",
        "updated ConfigMap/lake-config, updated Service/lake-rw, updated StatefulSet/lake",
    ));
    scenario.push(event("ComponentsNotReady", "PostgresReady"));
    scenario.push(event("RollingOut", "one at a time"));
    let status = Arc::new(Mutex::new(None));
    scenario.push(status_apply(&status));
    let mock = server.run(scenario);

    reconcile(Arc::new(after), ctx).await.expect("reconcile");
    let seen = finish(mock).await;
    let patched: Vec<&str> = seen
        .iter()
        .filter(|s| s.method == Method::PATCH)
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(patched.len(), 4, "{patched:?}");
    let body = status.lock().unwrap().take().unwrap();
    assert_eq!(body["status"]["observedGeneration"], 2);
    assert_eq!(body["status"]["phase"], "Upgrading");
    assert_eq!(
        condition_of(&body["status"], POSTGRES_READY)["reason"],
        "RollingOut"
    );
    assert_eq!(
        condition_of(&body["status"], EXTENSION_UP_TO_DATE)["status"],
        "True"
    );
}

#[tokio::test]
async fn version_change_rolls_out_then_updates_the_extension() {
    let v1 = LakeCluster::test().finalized();
    let v2 = v1
        .clone()
        .with_status(ready_status(&v1))
        .changed(|s| s.version = "0.2.0".into());
    let old = owned(&v1);
    let new = owned(&v2);
    let job_path = path::group("batch/v1", "jobs", "lake-extension-0-2-0");

    // 1. New images are applied; the extension waits for the rollout.
    let (ctx, server) = just_applied(&v1, 1);
    let mut scenario = vec![keys_secret(), existing_secret(), existing_token()];
    for (o, n) in old.iter().zip(&new) {
        scenario.push(Exchange::get(&o.path).reply(settled(o.desired.clone(), 1)));
        if o.desired != n.desired {
            let desired = n.desired.clone();
            scenario.push(
                Exchange::apply(&n.path)
                    .reply(rolling(n.desired.clone(), 2))
                    .check(move |body| {
                        assert_eq!(body, &desired);
                        let images: Vec<&str> = body["spec"]["template"]["spec"]["containers"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|c| c["image"].as_str().unwrap())
                            .collect();
                        assert!(images.iter().all(|i| i.ends_with(":0.2.0")), "{images:?}");
                    }),
            );
        }
    }
    scenario.push(event(
        "Applied",
        "updated StatefulSet/lake, updated Deployment/lake-catalog",
    ));
    scenario.push(event("ComponentsNotReady", "waiting for"));
    scenario.push(event("RollingOut", ""));
    scenario.push(event("Unavailable", "rolling out"));
    scenario.push(event("WaitingForRollout", "0.2.0"));
    let status = Arc::new(Mutex::new(None));
    scenario.push(status_apply(&status));
    let mock = server.run(scenario);
    reconcile(Arc::new(v2.clone()), ctx).await.expect("step 1");
    let seen = finish(mock).await;
    assert!(
        !seen.iter().any(|s| s.path.contains("/jobs/")),
        "no Job before the rollout"
    );
    let step1: LakeClusterStatus =
        serde_json::from_value(status.lock().unwrap().take().unwrap()["status"].clone()).unwrap();
    assert_eq!(step1.phase, Some(Phase::Upgrading));
    assert_eq!(step1.installed_extension_version.as_deref(), Some("0.1.0"));

    // 2. The pods run 0.2.0 and are ready: the update Job starts.
    let v2 = v2.with_status(step1);
    let (ctx, server) = just_applied(&v2, 2);
    let mut scenario = vec![keys_secret(), existing_secret(), existing_token()];
    scenario.extend(unchanged_gets(&new, 2));
    scenario.push(Exchange::get(&job_path).not_found());
    scenario.push(Exchange::apply(&job_path).check(|body| {
        let container = &body["spec"]["template"]["spec"]["containers"][0];
        let command: Vec<String> = serde_json::from_value(container["command"].clone()).unwrap();
        assert_eq!(command[0], "psql");
        assert!(
            command.contains(&"ALTER EXTENSION pg_lake UPDATE TO '0.2.0'".to_string()),
            "{command:?}"
        );
        assert_eq!(env_of(container, "PGHOST")["value"], "lake-rw");
        assert_eq!(
            env_of(container, "PGPASSWORD")["valueFrom"]["secretKeyRef"],
            json!({"name": "lake-superuser", "key": "password", "optional": false})
        );
        assert_no_inline_credentials(&body["spec"]["template"]["spec"]);
        assert_eq!(
            body["metadata"]["ownerReferences"][0]["kind"],
            "LakeCluster"
        );
    }));
    scenario.push(event("Applied", "created Job/lake-extension-0-2-0"));
    scenario.push(event("PodsReady", "1/1"));
    scenario.push(event("Available", "1/1"));
    scenario.push(event("Updating", "lake-extension-0-2-0"));
    scenario.push(status_apply(&status));
    let mock = server.run(scenario);
    reconcile(Arc::new(v2.clone()), ctx).await.expect("step 2");
    finish(mock).await;
    let step2: LakeClusterStatus =
        serde_json::from_value(status.lock().unwrap().take().unwrap()["status"].clone()).unwrap();
    let ext = step2
        .conditions
        .iter()
        .find(|c| c.type_ == EXTENSION_UP_TO_DATE)
        .unwrap();
    assert_eq!(
        (ext.status.as_str(), ext.reason.as_str()),
        ("False", "Updating")
    );

    // 3. The Job succeeded: the extension is up to date and the cluster ready.
    let v2 = v2.with_status(step2);
    let (ctx, server) = just_applied(&v2, 2);
    let mut scenario = vec![keys_secret(), existing_secret(), existing_token()];
    scenario.extend(unchanged_gets(&new, 2));
    scenario.push(Exchange::get(&job_path).reply(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "lake-extension-0-2-0", "namespace": NS},
        "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    })));
    scenario.push(event("ClusterReady", "ready"));
    scenario.push(event("Installed", "pg_lake 0.2.0 is installed"));
    scenario.push(status_apply(&status));
    let mock = server.run(scenario);
    let action = reconcile(Arc::new(v2), ctx).await.expect("step 3");
    assert_eq!(action, Action::requeue(RESYNC));
    finish(mock).await;
    let step3 = status.lock().unwrap().take().unwrap();
    assert_eq!(step3["status"]["installedExtensionVersion"], "0.2.0");
    assert_eq!(step3["status"]["phase"], "Ready");
    assert_eq!(
        condition_of(&step3["status"], EXTENSION_UP_TO_DATE)["status"],
        "True"
    );
}

fn finalizer_removal() -> Exchange {
    let removed = serde_json::to_value(LakeCluster::test().deleting()).unwrap();
    Exchange::new(Method::PATCH, path::lakecluster())
        .reply(removed)
        .check(|body| {
            assert_eq!(
                body,
                &json!([
                    {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
                    {"op": "remove", "path": "/metadata/finalizers/0"},
                ])
            );
        })
}

#[tokio::test]
async fn deletion_keeps_the_data_by_default() {
    let (ctx, server, _) = Context::test();
    let lc = LakeCluster::test().finalized().deleting();
    let mock = server.run(vec![
        event(
            "DataRetained",
            "kept the PersistentVolumeClaims labelled pglake.dev/cluster=lake,app.kubernetes.io/component=postgres and Secrets lake-superuser, lake-catalog-token",
        ),
        finalizer_removal(),
    ]);
    let action = reconcile(Arc::new(lc), ctx).await.expect("reconcile");
    assert_eq!(action, Action::await_change());
    let seen = finish(mock).await;
    assert!(
        !seen.iter().any(|s| s.method == Method::DELETE),
        "nothing is deleted: {seen:?}"
    );
}

#[tokio::test]
async fn deletion_with_reclaim_delete_removes_the_data() {
    let (ctx, server, _) = Context::test();
    let lc = LakeCluster::test()
        .changed(|s| s.postgres.storage.reclaim_policy = ReclaimPolicy::Delete)
        .finalized()
        .deleting();
    let selector = "pglake.dev/cluster=lake,app.kubernetes.io/component=postgres";
    let mock = server.run(vec![
        Exchange::new(Method::DELETE, format!("/api/v1/namespaces/{NS}/persistentvolumeclaims"))
            .query("labelSelector", selector)
            .reply(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {}, "items": []})),
        Exchange::new(Method::DELETE, path::core("secrets", "lake-superuser")).not_found(),
        // The generated catalog token goes with the superuser Secret.
        Exchange::new(Method::DELETE, path::core("secrets", "lake-catalog-token")).reply(
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
        ),
        event(
            "DataDeleted",
            "deleted the PersistentVolumeClaims labelled pglake.dev/cluster=lake,app.kubernetes.io/component=postgres and Secrets lake-superuser, lake-catalog-token",
        ),
        finalizer_removal(),
    ]);
    reconcile(Arc::new(lc), ctx).await.expect("reconcile");
    finish(mock).await;
}

/// `catalog.auth: none`, said explicitly: no token Secret is generated (or read),
/// the catalog runs open and the status names no token Secret. The cluster's
/// own Secrets still go with the data on deletion, the token Secret no longer.
#[tokio::test]
async fn catalog_auth_none_generates_no_token() {
    let (ctx, server, _) = Context::test();
    let lc = LakeCluster::test()
        .finalized()
        .changed(|s| s.catalog.auth = crate::crd::CatalogAuth::Open);
    let mut scenario = vec![
        keys_secret(),
        Exchange::get(path::core("secrets", "lake-superuser")).not_found(),
        Exchange::new(Method::POST, format!("/api/v1/namespaces/{NS}/secrets"))
            .echo()
            .check(|body| assert_eq!(body["metadata"]["name"], "lake-superuser")),
    ];
    for o in owned(&lc) {
        scenario.push(Exchange::get(&o.path).not_found());
        scenario.push(Exchange::apply(&o.path).check(|body| {
            if body["kind"] == "Deployment" {
                let catalog = &body["spec"]["template"]["spec"]["containers"][0];
                assert_eq!(env_of(catalog, "REST_CATALOG_AUTH")["value"], "none");
                assert!(
                    !catalog.to_string().contains("REST_CATALOG_TOKENS"),
                    "{catalog}"
                );
            }
        }));
    }
    scenario.push(event(
        "Applied",
        "created Secret/lake-superuser, created ServiceAccount/lake",
    ));
    let status = Arc::new(Mutex::new(None));
    scenario.push(status_apply(&status));
    let mock = server.run(scenario);
    reconcile(Arc::new(lc.clone()), ctx)
        .await
        .expect("reconcile");
    let seen = finish(mock).await;
    assert!(
        !seen.iter().any(|s| s.path.contains("catalog-token")),
        "{seen:?}"
    );
    let body = status.lock().unwrap().take().unwrap();
    assert!(body["status"].get("catalogTokenSecret").is_none(), "{body}");
    assert_eq!(
        body["status"]["catalogUrl"],
        "http://lake-catalog.testns.svc:8181"
    );

    let (ctx, server, _) = Context::test();
    let lc = lc
        .changed(|s| s.postgres.storage.reclaim_policy = ReclaimPolicy::Delete)
        .deleting();
    let mock = server.run(vec![
        Exchange::new(Method::DELETE, format!("/api/v1/namespaces/{NS}/persistentvolumeclaims"))
            .reply(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {}, "items": []})),
        Exchange::new(Method::DELETE, path::core("secrets", "lake-superuser")).not_found(),
        event("DataDeleted", "and Secret lake-superuser"),
        finalizer_removal(),
    ]);
    reconcile(Arc::new(lc), ctx).await.expect("deleted");
    finish(mock).await;
}

/// A token Secret the spec names is read (a missing one is SecretMissing), none
/// is generated, the catalog reads its tokens from it and the status names it.
#[tokio::test]
async fn a_named_token_secret_is_used_not_generated() {
    let lc = LakeCluster::test().finalized().changed(|s| {
        s.catalog.auth_token_secret = Some(crate::crd::SecretKeySelector {
            name: "tokens".into(),
            key: "list".into(),
        })
    });
    let (ctx, server, _) = Context::test();
    let mut scenario = vec![
        keys_secret(),
        Exchange::get(path::core("secrets", "tokens")).reply(secret_reply("tokens", &["list"])),
        existing_secret(),
    ];
    for o in owned(&lc) {
        scenario.push(Exchange::get(&o.path).not_found());
        scenario.push(Exchange::apply(&o.path).check(|body| {
            if body["kind"] == "Deployment" {
                let catalog = &body["spec"]["template"]["spec"]["containers"][0];
                assert_eq!(env_of(catalog, "REST_CATALOG_AUTH")["value"], "token");
                assert_eq!(
                    env_of(catalog, "REST_CATALOG_TOKENS")["valueFrom"]["secretKeyRef"],
                    json!({"name": "tokens", "key": "list", "optional": false})
                );
            }
        }));
    }
    scenario.push(event("Applied", "created ServiceAccount/lake"));
    let status = Arc::new(Mutex::new(None));
    scenario.push(status_apply(&status));
    let mock = server.run(scenario);
    reconcile(Arc::new(lc), ctx).await.expect("reconcile");
    let seen = finish(mock).await;
    assert!(
        !seen.iter().any(|s| s.path.contains("catalog-token")),
        "{seen:?}"
    );
    let body = status.lock().unwrap().take().unwrap();
    assert_eq!(body["status"]["catalogTokenSecret"], "tokens");
    assert!(!body.to_string().contains(KEY_VALUE));
}

#[test]
fn generated_tokens_are_long_url_safe_and_distinct() {
    let a = generate_token().unwrap();
    let b = generate_token().unwrap();
    assert_eq!(a.len(), 43);
    assert!(a
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    assert_ne!(a, b);
}

#[tokio::test]
async fn api_errors_requeue_with_growing_backoff() {
    let (ctx, server, registry) = Context::test();
    let lc = Arc::new(LakeCluster::test().finalized());
    let failing = || {
        Exchange::get(path::core("secrets", "s3-keys"))
            .fails(StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
    };
    let unfinalized = LakeCluster::test();
    let finalizer_added = Exchange::new(Method::PATCH, path::lakecluster())
        .reply(serde_json::to_value(unfinalized.clone().finalized()).unwrap());
    let mock = server.run(vec![failing(), failing(), finalizer_added, failing()]);
    let fail = |lc: Arc<LakeCluster>, ctx: Arc<Context>| async move {
        let err = reconcile(lc.clone(), ctx.clone())
            .await
            .expect_err("the API server failed");
        assert_eq!(err.metric_label(), "kube");
        assert!(
            err.to_string().contains("mock API server: InternalError"),
            "{err}"
        );
        error_policy(lc, &err, ctx)
    };
    assert_eq!(
        fail(lc.clone(), ctx.clone()).await,
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        fail(lc.clone(), ctx.clone()).await,
        Action::requeue(Duration::from_secs(10))
    );
    // A success resets the backoff.
    reconcile(Arc::new(unfinalized), ctx.clone())
        .await
        .expect("finalizer added");
    assert_eq!(
        fail(lc.clone(), ctx.clone()).await,
        Action::requeue(Duration::from_secs(5))
    );

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("lake_operator_reconcile_failures_total{error=\"kube\"} 3"),
        "{text}"
    );
    assert!(text.contains("lake_operator_reconciles_total 4"), "{text}");
    drop(ctx);
    finish(mock).await;
    assert_eq!(backoff(3), Duration::from_secs(20));
    assert_eq!(backoff(10), RESYNC);
}

#[tokio::test]
async fn disabling_the_catalog_removes_it() {
    let before = LakeCluster::test().finalized();
    let after = before
        .clone()
        .with_status(ready_status(&before))
        .changed(|s| s.catalog.enabled = false);
    let (ctx, server) = just_applied(&before, 2);
    let mut scenario = vec![keys_secret(), existing_secret()];
    scenario.extend(unchanged_gets(&owned(&after), 2));
    let deployment = path::group("apps/v1", "deployments", "lake-catalog");
    let service = path::core("services", "lake-catalog");
    let old = owned(&before);
    scenario.push(Exchange::get(&deployment).reply(settled(old[7].desired.clone(), 1)));
    scenario.push(
        Exchange::new(Method::DELETE, &deployment).reply(
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
        ),
    );
    scenario.push(Exchange::get(&service).reply(old[8].desired.clone()));
    scenario.push(
        Exchange::new(Method::DELETE, &service).reply(
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
        ),
    );
    scenario.push(event(
        "Applied",
        "deleted Deployment/lake-catalog, deleted Service/lake-catalog",
    ));
    scenario.push(event("Disabled", "disabled"));
    let status = Arc::new(Mutex::new(None));
    scenario.push(status_apply(&status));
    let mock = server.run(scenario);
    reconcile(Arc::new(after), ctx).await.expect("reconcile");
    finish(mock).await;
    let body = status.lock().unwrap().take().unwrap();
    assert!(body["status"].get("catalogUrl").is_none());
    assert_eq!(
        condition_of(&body["status"], CATALOG_READY)["reason"],
        "Disabled"
    );
}

#[tokio::test]
async fn a_spec_no_objects_can_be_built_from_is_reported_not_retried() {
    let (ctx, server, _) = Context::test();
    // Admitted by the schema's pattern, but beyond what a byte count holds.
    let lc = LakeCluster::test()
        .finalized()
        .changed(|s| s.pgduck.cache_size = Some("999999999E".into()));
    let status = Arc::new(Mutex::new(None));
    let mock = server.run(vec![
        event("InvalidSpec", "pgduck.cacheSize \"999999999E\""),
        status_apply(&status),
    ]);
    let action = reconcile(Arc::new(lc), ctx)
        .await
        .expect("reported, not failed");
    assert_eq!(action, Action::await_change());
    let seen = finish(mock).await;
    assert!(
        seen.iter().all(|s| !s.path.contains("statefulsets")),
        "no objects are applied"
    );
    let body = status.lock().unwrap().take().unwrap();
    assert_eq!(body["status"]["phase"], "Degraded");
    let ready = condition_of(&body["status"], READY);
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("InvalidSpec"))
    );
}

/// A Warning event, kept in `slot`.
fn warning(
    reason: &'static str,
    note_contains: &'static str,
    slot: &Arc<Mutex<Option<Value>>>,
) -> Exchange {
    let check = event(reason, note_contains).check;
    let keep = capture(slot);
    event(reason, note_contains).check(move |body| {
        assert_eq!(body["type"], "Warning", "{body}");
        check(body);
        keep(body);
    })
}

/// The Job of a first install, then its success: a new cluster gets its extension
/// whatever `autoUpdate` says, and becomes Ready.
#[tokio::test]
async fn a_new_cluster_with_auto_update_off_still_installs_the_extension() {
    let lc = LakeCluster::test()
        .finalized()
        .changed(|s| s.extension.auto_update = false);
    let objects = owned(&lc);
    let job_path = path::group("batch/v1", "jobs", "lake-extension-0-1-0");

    let (ctx, server) = just_applied(&lc, 2);
    let mut scenario = vec![keys_secret(), existing_secret(), existing_token()];
    scenario.extend(unchanged_gets(&objects, 2));
    scenario.push(Exchange::get(&job_path).not_found());
    scenario.push(Exchange::apply(&job_path).check(|body| {
        let command = body["spec"]["template"]["spec"]["containers"][0]["command"].to_string();
        assert!(
            command.contains("CREATE EXTENSION IF NOT EXISTS pg_lake VERSION '0.1.0'"),
            "{command}"
        );
    }));
    scenario.push(event("Applied", "created Job/lake-extension-0-1-0"));
    let status = Arc::new(Mutex::new(None));
    scenario.push(status_apply(&status));
    let mock = server.run(scenario);
    reconcile(Arc::new(lc.clone()), ctx).await.expect("install");
    finish(mock).await;
    let installing: LakeClusterStatus =
        serde_json::from_value(status.lock().unwrap().take().unwrap()["status"].clone()).unwrap();
    assert_eq!(installing.phase, Some(Phase::Provisioning));

    let lc = lc.with_status(installing);
    let (ctx, server) = just_applied(&lc, 2);
    let mut scenario = vec![keys_secret(), existing_secret(), existing_token()];
    scenario.extend(unchanged_gets(&objects, 2));
    scenario.push(Exchange::get(&job_path).reply(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "lake-extension-0-1-0", "namespace": NS},
        "status": {"succeeded": 1},
    })));
    scenario.push(event("ClusterReady", "ready"));
    scenario.push(event("Installed", "pg_lake 0.1.0 is installed"));
    scenario.push(status_apply(&status));
    let mock = server.run(scenario);
    let action = reconcile(Arc::new(lc), ctx).await.expect("installed");
    assert_eq!(action, Action::requeue(RESYNC));
    finish(mock).await;
    let body = status.lock().unwrap().take().unwrap();
    assert_eq!(body["status"]["phase"], "Ready");
    assert_eq!(body["status"]["installedExtensionVersion"], "0.1.0");
    assert_eq!(condition_of(&body["status"], READY)["status"], "True");
}

/// A new version with autoUpdate off: the pods run it, no Job runs, the installed
/// version stays, ExtensionUpToDate says the update is held back, and the
/// cluster stays Ready.
#[tokio::test]
async fn a_version_change_with_auto_update_off_holds_the_update_back() {
    let v1 = LakeCluster::test().finalized();
    let v2 = v1.clone().with_status(ready_status(&v1)).changed(|s| {
        s.version = "0.2.0".into();
        s.extension.auto_update = false;
    });
    let (ctx, server) = just_applied(&v2, 2);
    let mut scenario = vec![keys_secret(), existing_secret(), existing_token()];
    // The new pods are out and ready.
    scenario.extend(unchanged_gets(&owned(&v2), 2));
    scenario.push(event("AutoUpdateDisabled", "the update to 0.2.0 waits"));
    let status = Arc::new(Mutex::new(None));
    scenario.push(status_apply(&status));
    let mock = server.run(scenario);
    let action = reconcile(Arc::new(v2), ctx).await.expect("reconcile");
    assert_eq!(action, Action::requeue(RESYNC));
    let seen = finish(mock).await;
    assert!(
        !seen.iter().any(|s| s.path.contains("/jobs/")),
        "no extension Job: {seen:?}"
    );
    let body = status.lock().unwrap().take().unwrap();
    let status = &body["status"];
    assert_eq!(status["phase"], "Ready");
    assert_eq!(status["installedExtensionVersion"], "0.1.0");
    let ready = condition_of(status, READY);
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("True"), &json!("ClusterReady"))
    );
    assert!(
        ready["message"].as_str().unwrap().contains("held back"),
        "{ready}"
    );
    let ext = condition_of(status, EXTENSION_UP_TO_DATE);
    assert_eq!(
        (&ext["status"], &ext["reason"]),
        (&json!("False"), &json!("AutoUpdateDisabled"))
    );
}

/// A Secret the spec names is missing: nothing is applied, Ready says which
/// Secret (and never what any Secret holds), a Warning event too, and the
/// cluster is looked at again soon.
#[tokio::test]
async fn a_missing_secret_is_reported_by_name() {
    let lc = LakeCluster::test().finalized().changed(|s| {
        s.postgres.superuser_secret = Some(crate::crd::SecretName {
            name: "pg-admin".into(),
        });
        s.catalog.auth_token_secret = Some(crate::crd::SecretKeySelector {
            name: "tokens".into(),
            key: "tokens".into(),
        });
    });
    let (ctx, server, _) = Context::test();
    let status = Arc::new(Mutex::new(None));
    let event_body = Arc::new(Mutex::new(None));
    let mock = server.run(vec![
        Exchange::get(path::core("secrets", "pg-admin"))
            .reply(secret_reply("pg-admin", &["username", "password"])),
        keys_secret(),
        Exchange::get(path::core("secrets", "tokens")).not_found(),
        warning(
            "SecretMissing",
            "Secret tokens (catalog.authTokenSecret) does not exist",
            &event_body,
        ),
        status_apply(&status),
    ]);
    let action = reconcile(Arc::new(lc.clone()), ctx)
        .await
        .expect("reported");
    assert_eq!(action, Action::requeue(CONVERGING));
    let seen = finish(mock).await;
    assert!(
        seen.iter().all(|s| s.method == Method::GET
            || s.path.contains("events")
            || s.path.ends_with("/status")),
        "nothing is applied: {seen:?}"
    );
    let body = status.lock().unwrap().take().unwrap();
    assert_eq!(body["status"]["phase"], "Provisioning");
    let ready = condition_of(&body["status"], READY);
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("SecretMissing"))
    );
    assert!(
        ready["message"].as_str().unwrap().contains("tokens"),
        "{ready}"
    );
    let event = event_body.lock().unwrap().take().unwrap();
    for shown in [body.to_string(), event.to_string()] {
        assert!(
            !shown.contains(KEY_VALUE),
            "a Secret's value shows: {shown}"
        );
    }

    // The Secret exists but lacks a key the pods read.
    let (ctx, server, _) = Context::test();
    let lc = LakeCluster::test().finalized();
    let mock = server.run(vec![
        Exchange::get(path::core("secrets", "s3-keys"))
            .reply(secret_reply("s3-keys", &["accessKeyId"])),
        warning(
            "SecretMissing",
            "Secret s3-keys (objectStorage.credentials.s3KeysSecret) has no key \"secretAccessKey\"",
            &event_body,
        ),
        status_apply(&status),
    ]);
    reconcile(Arc::new(lc), ctx).await.expect("reported");
    finish(mock).await;
    let body = status.lock().unwrap().take().unwrap();
    let event = event_body.lock().unwrap().take().unwrap();
    for shown in [body.to_string(), event.to_string()] {
        assert!(
            !shown.contains(KEY_VALUE),
            "a Secret's value shows: {shown}"
        );
    }
}

/// A Normal event with exactly `note`.
fn normal(reason: &'static str, note: &'static str) -> Exchange {
    let check = event(reason, note).check;
    event(reason, note).check(move |body| {
        assert_eq!(body["type"], "Normal", "{body}");
        assert_eq!(body["note"], note, "{body}");
        check(body);
    })
}

/// Once the interval has passed, every object is applied with force whatever its
/// hash says: the rw Service someone switched to NodePort (its hash annotation
/// untouched) is put back and a Reverted event names it; unchanged objects are
/// no-op applies and go unreported. The next reconcile only reads again.
#[tokio::test]
async fn a_full_apply_once_the_interval_has_passed_reverts_hand_edits() {
    let base = LakeCluster::test().finalized();
    let lc = base.clone().with_status(ready_status(&base));
    let objects = owned(&lc);
    let (ctx, server) = remembering(&lc, 1, FULL_APPLY_EVERY);
    let rw = path::core("services", "lake-rw");
    let mut scenario = vec![keys_secret(), existing_secret(), existing_token()];
    for o in &objects {
        let edited = o.path == rw;
        let mut live = stored(o.desired.clone(), 1, "10");
        if edited {
            live["spec"]["type"] = json!("NodePort");
        }
        scenario.push(Exchange::get(&o.path).reply(live));
        let desired = o.desired.clone();
        let after = stored(o.desired.clone(), 1, if edited { "11" } else { "10" });
        scenario.push(
            Exchange::apply(&o.path)
                .reply(after)
                .check(move |body| assert_eq!(body, &desired)),
        );
    }
    scenario.push(normal(
        "Reverted",
        "reverted changes made outside the operator to Service/lake-rw",
    ));
    // The status is unchanged: no write. Then the next reconcile, within the interval.
    scenario.extend([keys_secret(), existing_secret(), existing_token()]);
    scenario.extend(unchanged_gets(&objects, 1));
    let mock = server.run(scenario);

    let lc = Arc::new(lc);
    let action = reconcile(lc.clone(), ctx.clone()).await.expect("full");
    assert_eq!(action, Action::requeue(RESYNC));
    let action = reconcile(lc, ctx).await.expect("shortcut");
    assert_eq!(action, Action::requeue(RESYNC));
    let seen = finish(mock).await;
    let patched: Vec<&str> = seen
        .iter()
        .filter(|s| s.method == Method::PATCH)
        .map(|s| s.path.as_str())
        .collect();
    let every: Vec<&str> = objects.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(patched, every, "the first reconcile applies every object");
}

/// A restarted operator remembers nothing: its first reconcile of an up-to-date
/// cluster applies every object (catching edits made while it was down), which
/// changes nothing and so reports nothing; then the hash shortcut applies.
#[tokio::test]
async fn the_first_reconcile_after_a_restart_is_a_full_apply() {
    let (ctx, server, _) = Context::test();
    let base = LakeCluster::test().finalized();
    let lc = base.clone().with_status(ready_status(&base));
    let objects = owned(&lc);
    let mut scenario = vec![keys_secret(), existing_secret(), existing_token()];
    for o in &objects {
        scenario.push(Exchange::get(&o.path).reply(stored(o.desired.clone(), 1, "10")));
        scenario.push(Exchange::apply(&o.path).reply(stored(o.desired.clone(), 1, "10")));
    }
    scenario.extend([keys_secret(), existing_secret(), existing_token()]);
    scenario.extend(unchanged_gets(&objects, 1));
    let mock = server.run(scenario);

    let lc = Arc::new(lc);
    reconcile(lc.clone(), ctx.clone()).await.expect("full");
    reconcile(lc, ctx).await.expect("shortcut");
    let seen = finish(mock).await;
    assert_eq!(
        seen.iter().filter(|s| s.method == Method::PATCH).count(),
        objects.len(),
        "one apply per object, no event, no status: {seen:?}"
    );
}

/// Between full applies, a generation other than the one the operator left says
/// the spec was edited: `kubectl scale sts lake --replicas=3` is reverted on the
/// next reconcile. A PodDisruptionBudget edit to a field the operator does not own
/// is applied over too, but the apply changes nothing (same resourceVersion), so
/// nothing is reported. Then the new generations are the ones remembered.
#[tokio::test]
async fn a_spec_edited_by_hand_is_reverted_without_waiting_for_the_interval() {
    let base = LakeCluster::test().finalized();
    let lc = base.clone().with_status(ready_status(&base));
    let objects = owned(&lc);
    let (ctx, server) = just_applied(&lc, 1);
    let mut scenario = vec![keys_secret(), existing_secret(), existing_token()];
    let mut after_edits = Vec::new();
    for o in &objects {
        let desired = o.desired.clone();
        match o.desired["kind"].as_str().unwrap() {
            "StatefulSet" => {
                let mut live = stored(desired.clone(), 2, "20");
                live["spec"]["replicas"] = json!(3);
                scenario.push(Exchange::get(&o.path).reply(live));
                let body = desired.clone();
                scenario.push(
                    Exchange::apply(&o.path)
                        .reply(stored(desired.clone(), 3, "21"))
                        .check(move |b| assert_eq!(b, &body)),
                );
                after_edits.push(Exchange::get(&o.path).reply(stored(desired, 3, "21")));
            }
            "PodDisruptionBudget" => {
                let mut live = stored(desired.clone(), 2, "30");
                live["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
                scenario.push(Exchange::get(&o.path).reply(live.clone()));
                scenario.push(Exchange::apply(&o.path).reply(live.clone()));
                after_edits.push(Exchange::get(&o.path).reply(live));
            }
            _ => {
                scenario.push(Exchange::get(&o.path).reply(settled(desired.clone(), 1)));
                after_edits.push(Exchange::get(&o.path).reply(settled(desired, 1)));
            }
        }
    }
    scenario.push(normal(
        "Reverted",
        "reverted changes made outside the operator to StatefulSet/lake",
    ));
    scenario.extend([keys_secret(), existing_secret(), existing_token()]);
    scenario.extend(after_edits);
    let mock = server.run(scenario);

    let lc = Arc::new(lc);
    let action = reconcile(lc.clone(), ctx.clone()).await.expect("edited");
    assert_eq!(action, Action::requeue(RESYNC));
    reconcile(lc, ctx).await.expect("shortcut");
    let seen = finish(mock).await;
    let patched: Vec<&str> = seen
        .iter()
        .filter(|s| s.method == Method::PATCH)
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(
        patched,
        [
            path::group("apps/v1", "statefulsets", NAME),
            path::group("policy/v1", "poddisruptionbudgets", NAME),
        ]
    );
}

/// A cluster requeues no later than its next full apply, in whole seconds.
#[test]
fn the_next_check_comes_no_later_than_the_next_full_apply() {
    let secs = Duration::from_secs;
    assert_eq!(next_check(RESYNC, FULL_APPLY_EVERY), RESYNC);
    assert_eq!(
        next_check(RESYNC, FULL_APPLY_EVERY - Duration::from_millis(3)),
        RESYNC
    );
    assert_eq!(next_check(RESYNC, secs(60)), secs(60));
    assert_eq!(next_check(RESYNC, Duration::from_millis(59_200)), secs(60));
    assert_eq!(next_check(CONVERGING, FULL_APPLY_EVERY), CONVERGING);
    assert_eq!(next_check(RESYNC, Duration::ZERO), secs(1));
}

/// A deleted cluster is forgotten: recreated, it starts with a full apply.
#[tokio::test]
async fn deletion_forgets_the_cluster() {
    let lc = LakeCluster::test().finalized().deleting();
    let (ctx, server) = just_applied(&lc, 1);
    let mock = server.run(vec![
        event("DataRetained", "kept the PersistentVolumeClaims"),
        finalizer_removal(),
    ]);
    reconcile(Arc::new(lc), ctx.clone())
        .await
        .expect("reconcile");
    assert!(ctx.applied().is_empty());
    drop(ctx);
    finish(mock).await;
}

/// A rollout whose new pod never becomes ready (a bad image): after
/// ROLLOUT_STUCK_AFTER since PostgresReady turned False, Ready and PostgresReady
/// say RolloutStuck, one Warning event says why, and the phase is Degraded. Before
/// that the rollout is merely under way and nothing is written. Observed from the
/// StatefulSet's status and the conditions' own transition times only.
#[tokio::test]
async fn a_rollout_that_never_becomes_ready_is_reported_stuck() {
    let v1 = LakeCluster::test().finalized();
    let v2 = v1
        .clone()
        .with_status(ready_status(&v1))
        .changed(|s| s.version = "0.2.0".into());
    let objects = owned(&v2);
    let find = |kind: &str| objects.iter().find(|o| o.desired["kind"] == kind).unwrap();
    // The new revision's pod is there but never ready.
    let mut sts = settled(find("StatefulSet").desired.clone(), 2);
    sts["status"] = json!({
        "observedGeneration": 2, "replicas": 1, "readyReplicas": 0, "updatedReplicas": 1,
        "currentRevision": "lake-1", "updateRevision": "lake-2",
    });
    let deployment = settled(find("Deployment").desired.clone(), 2);
    let rolling_since = |ago: Duration| {
        let c = Cluster::new(&v2).unwrap();
        let at = Timestamp::now() - ago;
        next_status(
            &c,
            v2.status.as_ref().unwrap(),
            &serde_json::from_value(sts.clone()).unwrap(),
            Some(&serde_json::from_value(deployment.clone()).unwrap()),
            &Extension::WaitingForRollout,
            at,
        )
    };
    let replies = || {
        let mut out = vec![keys_secret(), existing_secret(), existing_token()];
        for o in &objects {
            let live = if o.desired["kind"] == "StatefulSet" {
                sts.clone()
            } else {
                settled(o.desired.clone(), 2)
            };
            out.push(Exchange::get(&o.path).reply(live));
        }
        out
    };

    // Nine minutes in: still rolling out, nothing new to say.
    let under_way = rolling_since(ROLLOUT_STUCK_AFTER - Duration::from_secs(60));
    assert_eq!(under_way.phase, Some(Phase::Upgrading));
    let lc = v2.clone().with_status(under_way);
    let (ctx, server) = just_applied(&lc, 2);
    let mock = server.run(replies());
    let action = reconcile(Arc::new(lc), ctx).await.expect("under way");
    assert_eq!(action, Action::requeue(CONVERGING));
    let seen = finish(mock).await;
    assert!(seen.iter().all(|s| s.method == Method::GET), "{seen:?}");

    // Eleven minutes in: stuck.
    let lc = v2
        .clone()
        .with_status(rolling_since(ROLLOUT_STUCK_AFTER + Duration::from_secs(60)));
    let (ctx, server) = just_applied(&lc, 2);
    let mut scenario = replies();
    let event_body = Arc::new(Mutex::new(None));
    // Ready and PostgresReady say the same: one event.
    scenario.push(warning(
        "RolloutStuck",
        "0/1 pods ready: the rollout of lake-2 has not finished in the 10 minutes since",
        &event_body,
    ));
    let status = Arc::new(Mutex::new(None));
    scenario.push(status_apply(&status));
    let mock = server.run(scenario);
    reconcile(Arc::new(lc.clone()), ctx).await.expect("stuck");
    finish(mock).await;
    let body = status.lock().unwrap().take().unwrap();
    let stuck: LakeClusterStatus = serde_json::from_value(body["status"].clone()).unwrap();
    assert_eq!(stuck.phase, Some(Phase::Degraded));
    for type_ in [READY, POSTGRES_READY] {
        let c = condition_of(&body["status"], type_);
        assert_eq!(
            (&c["status"], &c["reason"]),
            (&json!("False"), &json!("RolloutStuck")),
            "{type_}"
        );
    }
    assert_eq!(event_body.lock().unwrap().take().unwrap()["action"], READY);

    // Looked at again, still stuck: the message holds still, so nothing is written.
    let lc = lc.with_status(stuck);
    let (ctx, server) = just_applied(&lc, 2);
    let mock = server.run(replies());
    reconcile(Arc::new(lc), ctx).await.expect("still stuck");
    let seen = finish(mock).await;
    assert!(seen.iter().all(|s| s.method == Method::GET), "{seen:?}");
}
