"""Task 2 on the analyst's own data in a real browser: drift, fit on this batch, evidence of a
flagged visitor, labels and the cleaned events download (streamlit run + Debian Chromium).

Uses the server and page of tests/test_browser.py; saves screenshots under
test-output/screenshots/ (anomaly_own_data_*.png).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_browser import (  # noqa: F401  (module fixtures: one server and one browser page)
    assert_no_exception,
    browser,
    browser_artifact_dir,
    dashboard_url,
    open_page,
    page,
    settle,
    shot,
)

from core.base import schema
from core.base.schema import RAW_EVENT_COLUMNS

pytestmark = pytest.mark.e2e


def test_own_data_drift_fit_evidence_labels_and_cleaned_download(page, dashboard_url, browser_artifact_dir, tmp_path):  # noqa: F811
    events = pd.read_parquet(browser_artifact_dir / schema.CLEAN_EVENTS)
    ids = np.sort(events["visitorid"].unique())[:3000]
    raw = events[events["visitorid"].isin(ids)][list(RAW_EVENT_COLUMNS)]
    raw = pd.concat([raw, raw.head(5)], ignore_index=True)  # 5 exact duplicates
    upload = tmp_path / "my_events.csv"
    raw.to_csv(upload, index=False)

    open_page(page, dashboard_url, "anomaly")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(upload))
    page.get_by_text("Flagged users, most anomalous first").wait_for()
    settle(page)
    assert_no_exception(page)
    assert page.get_by_text("Drift against the training users").is_visible()
    assert page.get_by_text("5 exact duplicate events were dropped", exact=False).is_visible()

    page.get_by_text("a detector fitted on this batch").click()
    page.get_by_text("scorable users of this batch (seed 42)", exact=False).wait_for()
    settle(page)
    assert_no_exception(page)
    assert page.get_by_text("Evidence for one flagged visitor").is_visible()
    assert page.get_by_text("Why:", exact=False).first.is_visible()
    shot(page, "anomaly_own_data_fit_and_evidence.png")

    labels = pd.DataFrame({"visitorid": ids[:500], "is_bot": (np.arange(500) % 9 == 0).astype(int)})
    labels_file = tmp_path / "labels.csv"
    labels.to_csv(labels_file, index=False)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').nth(1).set_input_files(str(labels_file))
    page.get_by_text("bootstrap resamples of the labelled visitors", exact=False).wait_for()
    settle(page)
    assert_no_exception(page)
    shot(page, "anomaly_own_data_labels.png")

    with page.expect_download() as info:
        page.get_by_role("button", name="Cleaned events as CSV").click()
    saved = tmp_path / "clean.csv"
    info.value.save_as(saved)
    clean = pd.read_csv(saved)
    assert len(clean) < len(raw) - 5 and not clean.duplicated().any()
