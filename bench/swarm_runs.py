"""End-to-end throughput on the local Swarm: N runs of a trivial script through the API, all
expected FINISHED, compared with bare `docker service create` runs of the same image.

    python -m bench.swarm_runs --url http://127.0.0.1:5000 --email ADMIN --password PW [--runs 200]

The server must run with EXECUTION_BACKEND=swarm (and EXECUTION_NETWORK=host here).
"""

import argparse
import statistics
import time
import uuid

import docker
import requests
from docker.types import RestartPolicy

from tests.archives import script_archive

TRIVIAL = "def run(params, logger):\n    return {'n': params['n']}\n"


class Api:
    def __init__(self, url: str, email: str, password: str):
        self.url, self.session = url, requests.Session()
        token = self.session.post(f"{url}/auth", json={"email": email, "password": password})
        self.session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        me = self.get("/api/v1/user/me")
        self.session.patch(
            f"{url}/api/v1/user/{me['id']}", json={"max_concurrent_executions": 1000}
        )

    def get(self, path: str) -> dict:
        return self.session.get(self.url + path).json()["data"]

    def publish(self) -> tuple[str, str]:
        archive = script_archive({"name": f"bench trivial {uuid.uuid4().hex[:8]}"}, main=TRIVIAL)
        script = self.session.post(
            f"{self.url}/api/v1/script", files={"file": ("t.tar.gz", archive)}
        ).json()["data"]
        while self.get(f"/api/v1/script/{script['id']}")["status"] not in ("SUCCESS", "FAIL"):
            time.sleep(0.5)
        return script["id"], built_image(script["id"])

    def run_all(self, script_id: str, count: int) -> tuple[list[dict], float]:
        """Submit `count` runs at once; wait for every one to end."""
        started = time.time()
        ids = {
            self.session.post(f"{self.url}/api/v1/script/{script_id}/run", json={"n": n}).json()[
                "data"
            ]["id"]
            for n in range(count)
        }
        done: dict[str, dict] = {}
        while len(done) < count and time.time() - started < 3600:
            # One list request per poll (as the plugin does), not one GET per execution.
            for body in self.get("/api/v1/execution/user?exclude=params&sort=-start_date"):
                if body["id"] in ids and body["status"] in ("FINISHED", "FAILED", "CANCELLED"):
                    done[body["id"]] = body
            time.sleep(0.2 if count == 1 else 1)
        return list(done.values()), time.time() - started


def built_image(script_id: str) -> str:
    """The script's image, found by the label every build carries (the API does not answer
    image names)."""
    client = docker.from_env(version="auto")
    [image] = client.images.list(filters={"label": f"gefapi.script={script_id}"})
    return image.tags[0] if image.tags else image.id


def bare_runs(image: str, runs: int) -> list[float]:
    client = docker.from_env(version="auto")
    durations = []
    for _ in range(runs):
        started = time.time()
        service = client.services.create(
            image,
            ["python", "-c", "print(1)"],
            restart_policy=RestartPolicy(condition="none"),
            networks=["host"],
        )
        while not any(t["Status"]["State"] in ("complete", "failed") for t in service.tasks()):
            time.sleep(0.1)
        durations.append(time.time() - started)
        service.remove()
    return durations


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:5000")
    parser.add_argument("--email", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--sample", type=int, default=10)
    args = parser.parse_args()
    api = Api(args.url, args.email, args.password)
    script_id, image = api.publish()
    ended, wall = api.run_all(script_id, args.runs)
    finished = sum(1 for body in ended if body["status"] == "FINISHED")
    print(
        f"{args.runs} runs submitted at once: {finished} FINISHED, "
        f"{args.runs - len(ended)} lost, {wall:.1f} s in all ({wall / args.runs:.2f} s each)"
    )
    one_at_a_time = [api.run_all(script_id, 1)[1] for _ in range(args.sample)]
    bare = bare_runs(image, args.sample)
    api_median, bare_median = statistics.median(one_at_a_time), statistics.median(bare)
    print(f"one at a time, submit to FINISHED seen: median {api_median:.2f} s")
    print(f"bare docker service create to exit:     median {bare_median:.2f} s")
    print(
        f"added per execution: {api_median - bare_median:.2f} s "
        f"(ratio {api_median / bare_median:.2f})"
    )


if __name__ == "__main__":
    main()
