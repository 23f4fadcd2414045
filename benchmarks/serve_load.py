"""Load on `kanime serve`: concurrent clients against the web page's API on localhost.

Usage:
    python benchmarks/serve_load.py [--clients 8] [--duration 30] [--count 1]
        [--latency-runs 50] [--out benchmarks/results/serve_load.json]

A paper-size generator (128x128, 16 residual blocks; random weights, which cost the same to
run as trained ones) is saved to a temporary file and `kanime serve` is started on it as its
own process on 127.0.0.1. First, the generation of one image is timed against the issue's
100 ms target, in this process and in the server, interleaved (see `latency`). Then
`--clients` threads, each with one keep-alive connection, post `/api/generate` requests of
`--count` images back to back for `--duration` seconds. The report gives requests/s,
images/s, latency percentiles and every error (a non-200 answer or a failed connection).
"""

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from results_io import write_result

ROOT = Path(__file__).resolve().parents[1]


def percentile(values, q):
    return float(np.percentile(values, q)) if values else None


def latency(characters, port, runs):
    """One 128x128 image, timed in this process and through the server, interleaved.

    In this process: `CharacterGenerator.generate` of one seed (the model call and the uint8
    conversion). Through the server: the round trip of a one-image `/api/generate` request
    (with PNG encoding and JSON) and the model time the server reports. Interleaving the two
    puts them under the same load from other processes.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    body = json.dumps({"count": 1, "tags": ["blonde hair", "blue eyes", "smile"]})
    for seed in range(3):  # first-call costs
        characters.generate([seed], "blonde hair, blue eyes, smile")
    local, round_trip, server_model = [], [], []
    for seed in range(runs):
        start = time.perf_counter()
        characters.generate([seed], "blonde hair, blue eyes, smile")
        local.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        connection.request("POST", "/api/generate", body, {"Content-Type": "application/json"})
        data = json.loads(connection.getresponse().read())
        round_trip.append((time.perf_counter() - start) * 1000)
        server_model.append(data["model_ms"])
    connection.close()

    def summary(times):
        return {
            "median_ms": statistics.median(times),
            "p90_ms": percentile(times, 90),
            "min_ms": min(times),
        }

    return {
        "runs": runs,
        "target_ms": 100,
        "in_process": summary(local),
        "server_model": summary(server_model),
        "server_round_trip": summary(round_trip),
        "meets_target": statistics.median(server_model) <= 100,
    }


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(port, process, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace")[-2000:]
            raise SystemExit(f"kanime serve exited with {process.returncode}:\n{error}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/api/vocabulary")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"kanime serve did not answer on port {port} in {timeout} s")


def client(port, count, deadline, index, out):
    """Posts generate requests back to back until `deadline`; appends (latency, status)."""
    hair = ["blonde hair", "red hair", "random", "blue hair"][index % 4]
    body = json.dumps({"count": count, "options": {"hair_color": hair, "smile": "random"}})
    headers = {"Content-Type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while time.monotonic() < deadline:
        start = time.perf_counter()
        try:
            connection.request("POST", "/api/generate", body, headers)
            answer = connection.getresponse()
            data = answer.read()
            status = answer.status
            if status == 200 and len(json.loads(data)["images"]) != count:
                status = "wrong image count"
        except (OSError, http.client.HTTPException, ValueError) as e:
            status = f"{type(e).__name__}: {e}"
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        out.append(((time.perf_counter() - start) * 1000, status))
    connection.close()


def load(port, clients, duration, count):
    deadline = time.monotonic() + duration
    outs = [[] for _ in range(clients)]
    threads = [
        threading.Thread(target=client, args=(port, count, deadline, i, outs[i]))
        for i in range(clients)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    rows = [row for out in outs for row in out]
    ok = [ms for ms, status in rows if status == 200]
    errors = {}
    for _, status in rows:
        if status != 200:
            errors[str(status)] = errors.get(str(status), 0) + 1
    return {
        "clients": clients,
        "duration_s": elapsed,
        "images_per_request": count,
        "requests": len(rows),
        "ok": len(ok),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "requests_per_s": len(ok) / elapsed,
        "images_per_s": len(ok) * count / elapsed,
        "latency_ms": {
            "p50": percentile(ok, 50),
            "p90": percentile(ok, 90),
            "p99": percentile(ok, 99),
            "max": max(ok) if ok else None,
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--count", type=int, default=1, help="images per request")
    parser.add_argument("--latency-runs", type=int, default=50)
    parser.add_argument("--out", default="benchmarks/results/serve_load.json")
    args = parser.parse_args()
    if not (1 <= args.clients <= 64 and 0 < args.duration <= 600):
        raise SystemExit("--clients must be in [1, 64] and --duration in (0, 600]")

    from kanime.inference import CharacterGenerator
    from kanime.models import Generator
    from kanime.models.export import save_model_atomic

    with tempfile.TemporaryDirectory() as tmp:
        generator_file = Path(tmp) / "generator.keras"
        model = Generator(resolution=128)
        save_model_atomic(model, generator_file)  # as `kanime fit` exports it
        params = model.count_params()
        del model
        load_before = os.getloadavg()
        characters = CharacterGenerator.load(generator_file)

        port = free_port()
        command = [sys.executable, "-m", "kanime.cli", "serve", str(generator_file)]
        command += ["--port", str(port)]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_for(port, server)
            single = latency(characters, port, args.latency_runs)
            print(
                f"one 128x128 image: median {single['in_process']['median_ms']:.1f} ms in "
                f"process, {single['server_model']['median_ms']:.1f} ms in the server, "
                f"{single['server_round_trip']['median_ms']:.1f} ms round trip",
                flush=True,
            )
            result = load(port, args.clients, args.duration, args.count)
            alive = server.poll() is None
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    lat = result["latency_ms"]
    print(
        f"{args.clients} clients x {result['duration_s']:.0f} s: {result['requests_per_s']:.2f} "
        f"requests/s, p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms, "
        f"{result['errors']} errors"
    )
    import keras

    report = {
        "what": "kanime serve under concurrent clients on localhost, and one-image latency",
        "generator": {"resolution": 128, "params": params, "weights": "random"},
        "backend": keras.backend.backend(),
        "single_image": single,
        "load": result,
        "server_alive_after_load": alive,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "command": "python " + " ".join(sys.argv),
    }
    write_result(args.out, report)


if __name__ == "__main__":
    main()
