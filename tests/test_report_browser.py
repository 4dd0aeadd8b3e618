"""The HTML report of a small compare, opened in a real browser (Debian's Chromium, headless).

The page is loaded twice: once as a screenshot (which must not be blank), once with a probe script
appended to a copy of it, whose findings (each image's natural size, the page's visible text) the
browser writes into the DOM it dumps. The report itself carries no script.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from test_cli_errors import run_cli
from test_compare import write_trace

BROWSER_TIMEOUT_S = 120
PROBE = """<script>
window.addEventListener("load", () => {
  const found = {
    images: [...document.images].map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight,
                                            shown: i.getBoundingClientRect().width})),
    text: document.body.innerText,
    tables: document.querySelectorAll("table").length,
  };
  const out = document.createElement("pre");
  out.id = "rlscale-probe";
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});
</script>"""


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("no Chromium: run `bash .ci/chromium.sh` (Debian's chromium package)")
    return binary


def _browse(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
               "--window-size=1200,3000", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The report of a small compare: one short trace, two seeds, the HPA, the tuned HPA, the oracle and the bound."""
    root = tmp_path_factory.mktemp("report")
    trace = write_trace(root / "traces" / "short_10s.csv", rows=180)
    tuning = write_trace(root / "tune" / "t_10s.csv", rows=120, seed=2)
    out = root / "report"
    done = run_cli("compare", "--traces", str(trace), "--tune-traces", str(tuning), "--seeds", "2",
                   "--policies", "hpa,hpa-tuned,oracle", "--report", str(out), "--jobs", "1")
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def found(report: Path, tmp_path_factory) -> dict:
    """What the probe saw once the browser had loaded a copy of the page."""
    root = tmp_path_factory.mktemp("probe")
    probe = root / "probe.html"
    probe.write_text((report / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = _browse(root / "profile", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()).stdout
    written = re.search(r'<pre id="rlscale-probe">(.*?)</pre>', dom, re.S)
    assert written is not None, f"the probe did not run: {dom[-500:]}"
    return json.loads(html.unescape(written.group(1)))


def test_every_plot_renders_in_the_browser(report: Path, found: dict) -> None:
    plots = sorted(p.name for p in report.glob("*.png"))
    markdown_images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (report / "report.md").read_text())
    assert len(found["images"]) == len(plots) == len(markdown_images) >= 3  # frontier, relative cost, one timeline
    for image in found["images"]:
        assert image["complete"] and image["width"] > 300 and image["height"] > 200, image  # decoded, not a broken icon
        assert 0 < image["shown"] <= 1200, image  # laid out inside the page
    assert found["tables"] == 2  # the summary and the per-load table


def test_the_page_reads_as_prose_and_tables(report: Path, found: dict) -> None:
    text = found["text"]
    for heading in ("Summary", "Per load", "Tuned baselines", "Runs over time (seed 0)"):
        assert heading in text
    assert "**" not in text and "`" not in text and "|---" not in text and "![" not in text  # no raw Markdown
    assert "{'" not in text and "}" not in text  # no Python dict reprs
    assert not re.search(r"\de[-+]\d", text), "a figure in scientific notation"  # 0.00%, never 2.3e-60
    assert re.search(r"\d+\.\d\d% ± \d+\.\d\d%", text)  # rates as percentages
    assert "hpa-tuned: image-classifier: target utilization" in text  # what tuning chose, in words
    assert str(report.parent) not in text and "/tmp/" not in text  # no paths of this machine


def test_the_screenshot_is_not_blank(report: Path, tmp_path: Path) -> None:
    import matplotlib.image

    shot = tmp_path / "report.png"
    _browse(tmp_path / "profile", f"--screenshot={shot}", (report / "report.html").as_uri())
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (3000, 1200)
    ink = np.any(pixels < 0.9, axis=2)  # anything darker than near-white
    assert ink.mean() > 0.02, "the page is (nearly) blank"
    rows_with_ink = np.flatnonzero(ink.any(axis=1))
    assert rows_with_ink[-1] - rows_with_ink[0] > 1500  # text, tables and plots down the page, not one line
    colours = {tuple(c) for c in np.round(pixels[::7, ::7] * 8).reshape(-1, 3)}
    assert len(colours) > 20  # the plots' colours, not just black text on white
