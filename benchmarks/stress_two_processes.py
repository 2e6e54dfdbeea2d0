# Copyright 2026 The diffusers-maskdm Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Start many short two-process CPU trainings (`accelerate launch`, gloo) and count those that do not end.

Each run trains a 2-block model for 3 steps on eight random 16 px images, as the test
`test_two_processes_train_one_model` does. A run that has not ended after `--timeout` seconds is counted as hung, its
processes' Python stacks are written to its log (faulthandler, SIGABRT) and it is killed. A hang at exit is a race,
so run it on a loaded machine (e.g. two copies at once) to see one.

    python benchmarks/stress_two_processes.py --runs 70 --work_dir /tmp/stress-a
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


# The test's own helpers, so that each run is exactly the test's command.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "training"))
from conftest import TINY_MODEL, _write_images  # noqa: E402
from script_runner import SCRIPT, TWO_PROCESS_FLAGS, base_args, launch_command, script_env  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds after which a run counts as hung")
    parser.add_argument("--work_dir", type=Path, required=True)
    args = parser.parse_args()

    data_dir = _write_images(args.work_dir / "images", 8, "RGB", seed=0)
    config = args.work_dir / "tiny.json"
    config.write_text(json.dumps(TINY_MODEL))
    env = script_env(PYTHONFAULTHANDLER="1")

    hung = []
    for run in range(args.runs):
        log_path = args.work_dir / f"run-{run}.log"
        with open(log_path, "w") as log:
            start = time.perf_counter()
            process = subprocess.Popen(
                [*launch_command(2), str(SCRIPT), *base_args(data_dir, config, args.work_dir / f"run-{run}")]
                + TWO_PROCESS_FLAGS,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                status = process.wait(timeout=args.timeout)
                print(f"run {run}: exit {status} after {time.perf_counter() - start:.1f} s", flush=True)
            except subprocess.TimeoutExpired:
                hung.append(run)
                print(f"run {run}: HUNG (stacks in {log_path})", flush=True)
                os.killpg(process.pid, signal.SIGABRT)  # the workers' faulthandler writes their stacks
                time.sleep(5)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    print(f"{len(hung)} of {args.runs} runs hung: {hung}")


if __name__ == "__main__":
    main()
