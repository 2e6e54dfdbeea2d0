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
"""The Python blocks of docs/quicktour.md and docs/hub.md run as written, against the loopback Hub."""

import re
import sys
from pathlib import Path

import pytest
from diffusers.utils import dynamic_modules_utils


DOCS = Path(__file__).resolve().parents[2] / "docs"


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


def run_doc(name: str, hub, tmp_path, monkeypatch) -> dict:
    blocks = python_blocks((DOCS / name).read_text(encoding="utf-8"))
    assert blocks, f"docs/{name} has no python blocks"
    monkeypatch.chdir(tmp_path)
    # custom_pipeline=<file> copies the file into diffusers' module cache and puts that on sys.path: keep both local.
    monkeypatch.setattr(dynamic_modules_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace: dict = {"__name__": f"docs_{Path(name).stem}"}
    for index, block in enumerate(blocks):
        try:
            exec(compile(block, f"docs/{name} python block {index + 1}", "exec"), namespace)
        except Exception as err:
            raise AssertionError(f"docs/{name}, python block {index + 1} failed:\n{block}") from err
    return namespace


def test_quicktour_runs(hub, tmp_path, monkeypatch):
    namespace = run_doc("quicktour.md", hub, tmp_path, monkeypatch)
    assert (tmp_path / "sample.png").is_file()
    assert (tmp_path / "maskdm-quicktour" / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    files = hub.files("your-name/maskdm-quicktour")
    assert "samples.png" in files and "| Mask rate | 90% |" in files["README.md"].decode()
    assert type(namespace["pipe"]).__name__ == "MaskedDDPMPipeline"


def test_hub_guide_runs(hub, tmp_path, monkeypatch):
    namespace = run_doc("hub.md", hub, tmp_path, monkeypatch)
    assert "README.md" in hub.files("your-name/maskdm-emoji-16")
    assert type(namespace["generic"]).__name__ == "MaskedDDPMPipeline"


@pytest.mark.parametrize("name", ["quicktour.md", "hub.md"])
def test_docs_only_use_python_blocks_for_code_that_runs(name):
    # Illustrative snippets are ```text or ```bash; a ```py block would silently escape this test.
    text = (DOCS / name).read_text(encoding="utf-8")
    assert not re.search(r"^```(py|python3|pycon)\s*$", text, flags=re.M)
