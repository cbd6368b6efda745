"""MLflow's model registry under the operations the registry benchmark measures:
register a model version with a small artifact (log the artifact, then create
the version pointing at it, as a publish uploads then registers), get it,
search by name. Starts a local tracking server on SQLite and prints JSON with
operations per second."""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

workdir, n = sys.argv[1], int(sys.argv[2])
os.makedirs(workdir, exist_ok=True)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen(
    [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
     "--backend-store-uri", f"sqlite:///{workdir}/mlflow.db",
     "--default-artifact-root", f"file://{workdir}/artifacts", "--workers", "1"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.2)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    art = tempfile.mkdtemp()
    exp = client.create_experiment("bench")
    run = client.create_run(exp)
    files = []
    for i in range(n):
        p = os.path.join(art, f"model-{i}.bin")
        with open(p, "wb") as f:
            f.write(os.urandom(60))
        files.append(p)
    for i in range(n):
        client.create_registered_model(f"mlp-{i}")
    t = time.perf_counter()
    for i in range(n):
        client.log_artifact(run.info.run_id, files[i], artifact_path=f"v{i}")
        client.create_model_version(f"mlp-{i}", f"runs:/{run.info.run_id}/v{i}/model-{i}.bin", run_id=run.info.run_id)
    reg = n / (time.perf_counter() - t)
    # Sixteen clients at once. One worker is MLflow's fastest setting here for every measure (more
    # workers answered each call ~40 ms slower), so it is what we compare against.
    from concurrent.futures import ThreadPoolExecutor

    def register(i):
        client.create_registered_model(f"c-{i}")
        client.log_artifact(run.info.run_id, files[i % n], artifact_path=f"c{i}")
        client.create_model_version(f"c-{i}", f"runs:/{run.info.run_id}/c{i}/model-{i % n}.bin", run_id=run.info.run_id)

    t = time.perf_counter()
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(register, range(n)))
    reg_conc = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(n):
        client.get_model_version(f"mlp-{i}", "1")
    get = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(n):
        client.search_model_versions(f"name='mlp-{i}'")
    search = n / (time.perf_counter() - t)
    print(json.dumps({"register_per_s": reg, "register_concurrent_per_s": reg_conc, "get_per_s": get, "search_per_s": search}))
finally:
    server.terminate()
    server.wait()
