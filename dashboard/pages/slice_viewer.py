"""The study page's slice scroller: one slice at a time with its heatmap, and the probability strip.

Slices are fetched from the PACS when first shown (a series can hold hundreds) and decoded
exactly as the model decoded them, so the heatmap, computed on the model's 224-pixel view, lies
on the same pixels. The mouse wheel over the image, the arrow keys, the buttons and a click on
the strip chart all move through the slices; ``h`` toggles the heatmap.
"""

import json
import logging

from nicegui import run, ui
from nicegui.events import (
    EChartPointClickEventArguments,
    GenericEventArguments,
    KeyEventArguments,
)

from dashboard.images import data_url, prepare
from dashboard.pacs import PacsFailure
from dashboard.pages.study_widgets import VERDICT_NAMES
from dashboard.services import services
from dashboard.study_view import SliceInfo, slice_infos, strip_chart
from neuroscan.imaging import ImageDecodeError
from neuroscan.study_results import SeriesResult

log = logging.getLogger(__name__)
_HEATMAP_OPACITY = 0.6
_CACHED_SLICES = 64
_NEXT_KEYS, _PREVIOUS_KEYS = {"ArrowDown", "ArrowRight", "PageDown"}, {"ArrowUp", "ArrowLeft", "PageUp"}


class SliceViewer:
    """Scroll through one series; starts on its first key slice."""

    def __init__(self, series: SeriesResult) -> None:
        self.series = series
        self.slices = slice_infos(series)
        self.index = min((s.index for s in self.slices if s.key), default=0)
        self._views: dict[int, bytes | None] = {}
        self._heatmaps: dict[int, bytes | None] = {}
        with ui.row().classes("w-full flex-wrap gap-6 items-start"):
            with ui.column().classes("gap-2"):
                self._image_box()
                self._controls()
            with ui.column().classes("flex-1 min-w-[300px] gap-2"):
                self.info = ui.label().classes("text-base").props('role="status" aria-live="polite"') \
                    .mark("slice-info")
                self.chart = ui.echart(strip_chart(self.slices, self.index), on_point_click=self._chart_click) \
                    .classes("w-full h-56").mark("strip-chart")
                ui.label("Tumour probability (1 - p(no tumour)) per slice; key slices in red, slices that did not "
                         "count in grey. Click a point to go to its slice.").classes("text-xs text-slate-600")
        # buttons keep the arrow keys working after a click; only typing into fields is left alone, and
        # the keys that move through slices do not scroll the page as well
        ui.keyboard(on_key=self._key, ignore=["input", "select", "textarea"]) \
            .on("key", js_handler=f"(e) => {{ if ({json.dumps(sorted(_NEXT_KEYS | _PREVIOUS_KEYS))}.includes(e.key)) "
                                  "e.event.preventDefault(); }")

    def _image_box(self) -> None:
        self.box = ui.element("div").classes("relative w-96 h-96 max-w-full bg-black rounded") \
            .props('tabindex="0" role="img" aria-label="Slice viewer: use the arrow keys or the mouse wheel"') \
            .mark("slice-box")
        self.box.on("wheel.prevent", self._wheel, ["deltaY"], throttle=0.05)
        with self.box:
            self.view = _layer("Slice as seen by the model").mark("slice-view")
            self.heatmap = _layer("Grad-CAM heatmap of this slice").style(f"opacity: {_HEATMAP_OPACITY}") \
                .mark("slice-heatmap")
            self.missing = ui.label().classes("absolute inset-0 flex items-center justify-center text-white p-4") \
                .mark("slice-missing")

    def _controls(self) -> None:
        with ui.row().classes("items-center gap-2 w-96 max-w-full no-wrap"):
            ui.button(icon="arrow_upward", on_click=lambda: self.step(-1)) \
                .props('flat aria-label="Previous slice"').mark("slice-previous")
            self.position = ui.label().classes("text-sm").mark("slice-position")
            ui.button(icon="arrow_downward", on_click=lambda: self.step(1)) \
                .props('flat aria-label="Next slice"').mark("slice-next")
            ui.space()
            self.toggle = ui.switch("Show heatmap", value=True,
                                    on_change=lambda e: self.heatmap.set_visibility(
                                        e.value and self._heatmaps.get(self.index) is not None)) \
                .mark("slice-heatmap-toggle")

    async def step(self, delta: int) -> None:
        """Move ``delta`` slices, stopping at either end."""
        await self.show(max(0, min(len(self.slices) - 1, self.index + delta)))

    async def show(self, index: int) -> None:
        """Show slice ``index``: its texts at once, its pixels once fetched (unless another slice was asked for meanwhile)."""
        if not self.slices:
            self.missing.text = "This series has no slices."
            return
        self.index = index
        info = self.slices[index]
        self.position.text = f"Slice {index + 1} of {len(self.slices)}"
        self.info.text = _describe(info)
        self.chart.options["series"][0]["markLine"]["data"] = [{"xAxis": str(index + 1)}]
        self.chart.update()
        view, heatmap = await self._view(info), await self._heatmap(info)
        if self.index != index:
            return
        self.missing.text = "" if view else "This slice could not be loaded from the PACS."
        self.missing.visible = view is None
        self._set(self.view, view)
        self._set(self.heatmap, heatmap)
        self.view.visible = view is not None
        self.heatmap.visible = heatmap is not None and self.toggle.value
        self.toggle.set_enabled(heatmap is not None)

    async def _view(self, info: SliceInfo) -> bytes | None:
        """The slice's pixels, fetched once; a failed fetch is tried again next time the slice is shown."""
        if info.index not in self._views:
            view = await _fetch_view(info)
            if view is None:
                return None
            _remember(self._views, info.index, view)
        return self._views[info.index]

    async def _heatmap(self, info: SliceInfo) -> bytes | None:
        if info.index not in self._heatmaps:
            series = self.series
            _remember(self._heatmaps, info.index, await run.io_bound(
                services().study_results.heatmap, series.series_uid, series.model_version, info.instance_uid))
        return self._heatmaps[info.index]

    @staticmethod
    def _set(layer: ui.element, png: bytes | None) -> None:
        layer.props["src"] = data_url(png) if png else ""
        layer.update()

    async def _wheel(self, event: GenericEventArguments) -> None:
        await self.step(1 if event.args["deltaY"] > 0 else -1)

    async def _key(self, event: KeyEventArguments) -> None:
        if not event.action.keydown:
            return
        if event.key.name in _NEXT_KEYS:
            await self.step(1)
        elif event.key.name in _PREVIOUS_KEYS:
            await self.step(-1)
        elif event.key.name in {"h", "H"} and self.toggle.enabled:
            self.toggle.value = not self.toggle.value

    async def _chart_click(self, event: EChartPointClickEventArguments) -> None:
        await self.show(event.data_index)


def _remember(cache: dict[int, bytes | None], index: int, png: bytes | None) -> None:
    """Keep the last ``_CACHED_SLICES`` slices of a page: enough to scroll back and forth, bounded for long series."""
    cache[index] = png
    if len(cache) > _CACHED_SLICES:
        del cache[next(iter(cache))]


def _layer(alt: str) -> ui.element:
    """A plain stacked <img>, as on the case page (Quasar's q-img veils images given CSS opacity)."""
    layer = ui.element("img").classes("absolute inset-0 w-full h-full")
    layer.props["alt"] = alt
    return layer


def _describe(info: SliceInfo) -> str:
    if info.tumour_probability is None:
        return f"Slice {info.index + 1}: {info.note}."
    text = (f"Slice {info.index + 1}: {VERDICT_NAMES[info.label]}, tumour probability "
            f"{info.tumour_probability:.0%}")
    if info.key:
        text += "; a key slice"
    return text + (f"; did not count ({info.note})." if info.note else ".")


async def _fetch_view(info: SliceInfo) -> bytes | None:
    """The slice's model view from its DICOM file in the PACS; None (and a log line) if it cannot be had."""
    if info.orthanc_id is None:
        return None
    try:
        data = await services().pacs.instance_file(info.orthanc_id)
        return (await run.io_bound(prepare, data, 1)).view_png
    except PacsFailure:
        return None
    except ImageDecodeError as exc:
        log.warning("slice %d of a study cannot be decoded: %s", info.index + 1, exc.code)
        return None
