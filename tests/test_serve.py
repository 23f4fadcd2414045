"""The web page's JSON API and static files: good requests, every bad input, concurrency."""

import base64
import http.client
import json
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from kanime.inference import CharacterGenerator
from kanime.models import Generator
from kanime.models.export import save_model_atomic
from kanime.serve import schema
from kanime.serve.app import MAX_BODY_BYTES, create_app, is_loopback
from kanime.serve.background import BackgroundServer
from kanime.tags import PAPER_TAGS

LATENT = 8


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory):
    model = Generator(
        resolution=32, latent_dim=LATENT, channels=8, num_blocks=1, upsample_channels=16
    )
    path = tmp_path_factory.mktemp("serve") / "generator.keras"
    save_model_atomic(model, path)  # as `kanime fit` exports it
    return path


@pytest.fixture(scope="module")
def characters(generator_file):
    return CharacterGenerator.load(generator_file)


@pytest.fixture(scope="module")
def client(generator_file):
    with TestClient(create_app(generator_file)) as client:
        yield client


@pytest.fixture(scope="module")
def server(characters):
    with BackgroundServer(create_app(characters)) as server:
        yield server


def decode(data_url):
    assert data_url.startswith("data:image/png;base64,")
    raw = base64.b64decode(data_url.split(",", 1)[1])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


def post(client, path, body):
    answer = client.post(path, json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_vocabulary_describes_the_controls_and_limits(client):
    data = client.get("/api/vocabulary").json()
    assert data["resolution"] == 32 and data["latent_dim"] == LATENT
    assert len(data["tags"]) == 34
    kinds = {c["key"]: c["kind"] for c in data["controls"]}
    assert kinds["hair_color"] == kinds["hair_style"] == kinds["eye_color"] == "selector"
    for tag in ("blush", "smile", "open mouth", "hat", "ribbon", "glasses"):
        assert kinds[tag] == "toggle"
    assert data["limits"]["max_images"] == schema.MAX_IMAGES


def test_generate_returns_the_images_of_the_seeds_and_tags(client, characters):
    data = post(client, "/api/generate", {"seeds": [0, 7], "tags": "blonde hair, smile"})
    assert [x["seed"] for x in data["images"]] == [0, 7]
    expected = characters.generate([0, 7], "blonde hair, smile")
    for image, want in zip(data["images"], expected):
        assert image["tags"] == ["blonde hair", "smile"]
        assert image["noise_seed"] == image["seed"]
        assert len(image["noise"]) == LATENT
        pixels = decode(image["image"])
        assert pixels.shape == (32, 32, 3)
        np.testing.assert_array_equal(pixels, want)


def test_same_seed_and_options_give_the_same_character(client):
    body = {"seeds": [11, 11, 12], "options": {"hair_color": "random", "smile": "random"}}
    first, again = post(client, "/api/generate", body), post(client, "/api/generate", body)
    assert first["images"] == again["images"]
    a, b, c = first["images"]
    assert a == b and a["image"] != c["image"]
    assert len([t for t in a["tags"] if t.endswith(" hair")]) == 1


def test_random_options_vary_with_the_seed(client):
    data = post(client, "/api/generate", {"seeds": list(range(16)), "options": {"hat": "random"}})
    hats = [("hat" in x["tags"]) for x in data["images"]]
    colors = {x["tags"][0] for x in post(client, "/api/generate", {
        "seeds": list(range(16)), "options": {"hair_color": "random"}})["images"]}  # fmt: skip
    assert 0 < sum(hats) < 16 and len(colors) > 3


def test_noise_sent_back_gives_the_same_image(client):
    first = post(client, "/api/generate", {"seeds": [5], "tags": ["red hair"]})["images"][0]
    body = {"noise": [first["noise"]], "seeds": [99], "tags": ["red hair"]}
    again = post(client, "/api/generate", body)["images"][0]
    assert again["image"] == first["image"] and again["noise_seed"] is None
    nudged = [x + 0.5 for x in first["noise"]]
    other = post(client, "/api/generate", {"noise": [nudged], "tags": ["red hair"]})
    assert other["images"][0]["image"] != first["image"]


def test_locked_noise_seed_keeps_the_face_and_varies_random_tags(client):
    body = {"count": 6, "noise_seed": 3, "options": {"hair_color": "random"}}
    images = post(client, "/api/generate", body)["images"]
    assert all(x["noise_seed"] == 3 and x["noise"] == images[0]["noise"] for x in images)
    assert len({x["seed"] for x in images}) == 6
    assert len({x["tags"][0] for x in images}) > 1


def test_count_without_seeds_draws_seeds(client):
    images = post(client, "/api/generate", {"count": 3})["images"]
    assert len(images) == 3 and all(0 <= x["seed"] < schema.RANDOM_SEEDS for x in images)
    assert all(x["tags"] == [] for x in images)


def test_interpolate_runs_from_one_character_to_the_other(client, characters):
    body = {
        "start": {"seed": 1, "tags": ["blonde hair"]},
        "end": {"seed": 2, "tags": ["blue hair"]},
        "frames": 5,
    }
    slerp = post(client, "/api/interpolate", body)
    lerp = post(client, "/api/interpolate", {**body, "method": "lerp"})
    assert [f["t"] for f in slerp["frames"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    np.testing.assert_array_equal(
        decode(slerp["frames"][0]["image"]), characters.generate([1], "blonde hair")[0]
    )
    np.testing.assert_array_equal(
        decode(slerp["frames"][-1]["image"]), characters.generate([2], "blue hair")[0]
    )
    assert lerp["frames"][0]["image"] == slerp["frames"][0]["image"]
    assert lerp["frames"][2]["image"] != slerp["frames"][2]["image"]


NOISE = [0.0] * LATENT
BAD = [
    # (path, body, the message names)
    ("generate", {"tags": ["purple unicorn"]}, "Unknown tag 'purple unicorn'"),
    ("generate", {"tags": "blonde hair, red hair"}, "exclusive group 'hair_color'"),
    ("generate", {"tags": 5}, "`tags` must be a list"),
    ("generate", {"options": {"hair_colour": "random"}}, "Unknown option 'hair_colour'"),
    ("generate", {"options": {"smile": "yes"}}, "options['smile'] must be 'on', 'off'"),
    ("generate", {"options": {"hair_color": "blue eyes"}}, "not a tag of the group"),
    ("generate", {"options": {"smile": "on"}, "tags": []}, "not both"),
    ("generate", {"options": ["smile"]}, "`options` must be an object"),
    ("generate", {"count": 17}, "`count` must be an integer in [1, 16]. Received: 17"),
    ("generate", {"count": 0}, "`count` must be an integer in [1, 16]. Received: 0"),
    ("generate", {"count": 2.5}, "`count` must be an integer"),
    ("generate", {"count": "3"}, "`count` must be an integer"),
    ("generate", {"count": True}, "`count` must be an integer"),
    ("generate", {"seeds": list(range(17))}, "at most 16 entries"),
    ("generate", {"noise": [NOISE] * 17}, "at most 16 entries"),
    ("generate", {"seeds": [-1]}, "seeds[0] (a seed) must be an integer in [0, "),
    ("generate", {"seeds": [1.5]}, "seeds[0] (a seed) must be an integer"),
    ("generate", {"seeds": ["7"]}, "seeds[0] (a seed) must be an integer"),
    ("generate", {"seeds": [2**53]}, "seeds[0] (a seed) must be an integer in [0, "),
    ("generate", {"seeds": [0, 10**40]}, "seeds[1] (a seed)"),
    ("generate", {"seeds": [None]}, "seeds[0] (a seed) must be an integer"),
    ("generate", {"seeds": 3}, "`seeds` must be a non-empty list"),
    ("generate", {"seeds": []}, "`seeds` must be a non-empty list"),
    ("generate", {"noise_seed": -5}, "`noise_seed` (a seed)"),
    ("generate", {"noise_seed": None}, "`noise_seed` (a seed) must be an integer in [0, "),
    ("generate", {"count": 2, "seeds": [1]}, "differ (count: 2, seeds: 1)"),
    ("generate", {"noise": [NOISE[:-1]]}, "noise[0] must be a list of 8 numbers"),
    ("generate", {"noise": [NOISE + [0.0]]}, "Received: 9 entries"),
    ("generate", {"noise": NOISE}, "noise[0] must be a list of 8 numbers"),
    ("generate", {"noise": [["a"] * LATENT]}, "noise[0][0] must be a number"),
    ("generate", {"noise": [[1e9] * LATENT]}, "noise[0][0] must be a number in [-100, 100]"),
    ("generate", {"noise": [NOISE], "noise_seed": 1}, "not both"),
    ("generate", {"colour": "blue"}, "unknown fields ['colour']"),
    ("generate", {"sede": [1]}, "unknown fields ['sede']. Did you mean 'seeds'? Expected fields"),
    ("generate", [1, 2], "The body must be a JSON object"),
    ("generate", "seeds", "The body must be a JSON object"),
    ("interpolate", {"start": {"seed": 1}}, "`end` is missing"),
    ("interpolate", {"start": {"seed": 1, "noise": NOISE}, "end": {"seed": 2}}, "one of them"),
    ("interpolate", {"start": {"seed": 1}, "end": {"seed": -2}}, "end.seed (a seed)"),
    ("interpolate", {"start": {"seed": 1}, "end": {"noise": [1]}}, "end.noise must be a list"),
    ("interpolate", {"start": {"seed": 1, "tags": ["x"]}, "end": {"seed": 2}}, "start.tags"),
    ("interpolate", {"start": {"seed": 1}, "end": {"seed": 2}, "frames": 1}, "`frames`"),
    ("interpolate", {"start": {"seed": 1}, "end": {"seed": 2}, "frames": 33}, "in [2, 32]"),
    ("interpolate", {"start": {"sed": 1}, "end": {"seed": 2}}, "Did you mean 'seed'?"),
    ("interpolate", {"start": {"seed": 1}, "end": {"seed": 2}, "method": "cubic"}, "`method`"),
    ("interpolate", {"start": 1, "end": {"seed": 2}}, "`start` must be a JSON object"),
]


@pytest.mark.parametrize("path, body, message", BAD)
def test_each_bad_body_gets_400_with_a_message(client, path, body, message):
    answer = client.post(f"/api/{path}", json=body)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]


def test_misspelt_fields_get_a_guess_and_the_expected_fields():
    body = {"Count": 2, "nosie": [], "zzz": 1, "count": 0}
    with pytest.raises(schema.RequestError) as error:
        schema.parse_generate(body, PAPER_TAGS, LATENT)
    assert error.value.status == 400 and str(error.value) == (
        "The body has unknown fields ['Count', 'nosie', 'zzz']. Did you mean 'count' for "
        "'Count', 'noise' for 'nosie'? Expected fields from ['count', 'noise', 'noise_seed', "
        "'options', 'seeds', 'tags']."
    )


RAW = [
    (b'{"count": 2', "application/json", 400, "not valid JSON"),
    (b"", "application/json", 400, "not valid JSON"),
    (b'{"noise": [[NaN, 0, 0, 0, 0, 0, 0, 0]]}', "application/json", 400, "NaN"),
    (b'{"count": Infinity}', "application/json", 400, "Infinity"),
    (b'{"count": 1' + b"0" * 5000 + b"}", "application/json", 400, "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "not valid JSON"),
    (b'{"count": "\xff"}', "application/json", 400, "not UTF-8"),
    (b'{"count": 1}', "text/plain", 415, "application/json"),
    (b'{"count": 1}', None, 415, "application/json"),
    (b" " * (MAX_BODY_BYTES + 1), "application/json", 413, "larger than"),
]


@pytest.mark.parametrize("raw, kind, status, message", RAW)
def test_each_malformed_body_gets_4xx_with_a_message(client, raw, kind, status, message):
    headers = {"content-type": kind} if kind else {}
    answer = client.post("/api/generate", content=raw, headers=headers)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_random_bodies_never_get_a_server_error(client):
    rng = np.random.default_rng(0)
    values = [None, True, -1, 0, 3, 17, 2**60, 1.5, float("1e300"), "", "random", "on",
              "blonde hair", "x" * 5000, [], [1], ["smile"], [[0.0] * LATENT], {}, {"a": 1},
              {"hair_color": 1}, {"smile": ["on"]}, {"seed": 1}, {"noise": "z"}]  # fmt: skip
    fields = {
        "generate": ["count", "seeds", "noise", "noise_seed", "tags", "options", "other"],
        "interpolate": ["start", "end", "frames", "method", "other"],
    }
    statuses = set()
    for _ in range(300):
        path = str(rng.choice(list(fields)))
        chosen = rng.choice(fields[path], size=int(rng.integers(0, 4)), replace=False)
        body = {str(k): values[int(rng.integers(len(values)))] for k in chosen}
        answer = client.post(f"/api/{path}", json=body)
        assert answer.status_code in (200, 400), (body, answer.text)
        assert len(answer.json().get("error", "")) <= 2003
        statuses.add(answer.status_code)
    assert statuses == {200, 400}


def test_wrong_routes_and_methods_get_json_errors(client):
    assert client.get("/api/generate").status_code == 405
    missing = client.get("/api/nothing")
    assert missing.status_code == 404 and missing.json() == {"error": "Not found."}


def test_page_and_static_files_are_served_with_safe_headers(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="generate"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]


@pytest.mark.parametrize(
    "path",
    [
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2fapp.py",
        "/static/%2e%2e%2f%2e%2e%2fcli.py",
        "/static/..%5capp.py",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/....//app.py",
        "/../kanime/serve/app.py",
        "/static/",
    ],
)
def test_no_file_outside_the_static_folder_is_served(server, path):
    # http.client sends the path as it is, without the client-side clean-up of a browser.
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    connection.request("GET", path)
    answer = connection.getresponse()
    body = answer.read()
    connection.close()
    assert answer.status == 404, (path, body[:200])
    assert b"def create_app" not in body and b"root:" not in body and b"import" not in body


def test_concurrent_requests_all_succeed_with_their_own_images(server, characters):
    def ask(seed):
        connection = http.client.HTTPConnection(server.host, server.port, timeout=120)
        body = json.dumps({"seeds": [seed, seed + 100], "tags": ["green hair"]})
        connection.request("POST", "/api/generate", body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        data = json.loads(answer.read())
        connection.close()
        return seed, answer.status, data

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(ask, range(24)))
    for seed, status, data in results:
        assert status == 200, data
        expected = characters.generate([seed, seed + 100], "green hair")
        got = np.stack([decode(x["image"]) for x in data["images"]])
        np.testing.assert_array_equal(got, expected)


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")


def test_cli_serve_listens_on_loopback_and_warns_otherwise(monkeypatch, generator_file):
    from kanime import cli

    calls = []
    monkeypatch.setattr(cli, "run_serve", lambda chars, host, port: calls.append((host, port)))
    runner = CliRunner()
    quiet = runner.invoke(cli.app, ["serve", str(generator_file)])
    assert quiet.exit_code == 0, quiet.output
    assert calls[-1] == ("127.0.0.1", 8000) and "Warning" not in quiet.output
    args = ["serve", str(generator_file), "--host", "0.0.0.0", "--port", "9"]
    loud = runner.invoke(cli.app, args)
    assert loud.exit_code == 0 and calls[-1] == ("0.0.0.0", 9)
    assert "Warning: listening on 0.0.0.0" in loud.output
    missing = runner.invoke(cli.app, ["serve", str(generator_file.parent / "nope.keras")])
    assert missing.exit_code == 2 and "No generator at" in missing.output


def test_cli_serve_engine_option_picks_and_says_what_runs_the_generator(
    monkeypatch, generator_file
):
    from kanime import cli

    served = []
    monkeypatch.setattr(cli, "run_serve", lambda chars, host, port: served.append(chars))
    runner = CliRunner()
    for args, engine, shown in (
        ([], "tflite", "(TensorFlow Lite)"),
        (["--engine", "keras"], "keras", "(Keras)"),
    ):
        result = runner.invoke(cli.app, ["serve", str(generator_file), *args])
        assert result.exit_code == 0, result.output
        assert served[-1].engine == engine and shown in result.output
    bad = runner.invoke(cli.app, ["serve", str(generator_file), "--engine", "onnx"])
    assert bad.exit_code == 2 and "onnx" in bad.output and len(served) == 2
