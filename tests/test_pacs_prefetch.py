"""The head start's bookkeeping (pacs/prefetch.py): bounded, handed out once, never an error.

Its use on a real study (every slice answered before the study is stable) is shown in
tests/test_pacs.py; here the loader and classifier are small stand-ins so eviction and failures
can be forced.
"""

import asyncio

from pydicom import Dataset

from neuroscan.pacs_client import PacsError
from pacs.inference import SliceReply
from pacs.pipeline import LoadedSlice
from pacs.prefetch import SlicePrefetcher


def header(modality: str = "MR", declared: int | None = None) -> Dataset:
    ds = Dataset()
    ds.Modality, ds.ImageType = modality, ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3", "1.2.3.4"
    if declared is not None:
        ds.ImagesInAcquisition = declared
    return ds


class Loader:
    def __init__(self, modality: str = "MR", fail: bool = False, declared: int | None = None) -> None:
        self.modality, self.fail, self.declared, self.fetched = modality, fail, declared, []

    async def fetch(self, orthanc_id: str) -> LoadedSlice:
        self.fetched.append(orthanc_id)
        if self.fail:
            raise PacsError("down")
        return LoadedSlice(orthanc_id, header(self.modality, self.declared), b"bytes")


class Classifier:
    async def prepare(self, loaded: LoadedSlice) -> LoadedSlice:
        return LoadedSlice(loaded.orthanc_id, loaded.header, b"", SliceReply({"label": "glioma", "model_version": "2"}))


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_prepared_slice_is_handed_out_once_without_its_bytes():
    async def scenario():
        prefetcher = SlicePrefetcher(Loader(), Classifier(), capacity=10)
        prefetcher.arrived("a")
        first, second = await prefetcher.take("a"), await prefetcher.take("a")
        return first, second
    first, second = run(scenario())
    assert first.reply.answer["label"] == "glioma" and first.body == b"" and first.answered_by("2")
    assert not first.answered_by("3")  # a model swapped meanwhile: the analysis asks again
    assert second is None


def test_beyond_capacity_the_oldest_is_dropped():
    async def scenario():
        prefetcher = SlicePrefetcher(Loader(), Classifier(), capacity=2)
        for orthanc_id in "abc":
            prefetcher.arrived(orthanc_id)
        return [await prefetcher.take(i) for i in "abc"]
    dropped, kept_b, kept_c = run(scenario())
    assert dropped is None and kept_b is not None and kept_c is not None


def test_an_unreachable_pacs_or_another_modality_gives_no_head_start():
    async def scenario(loader):
        prefetcher = SlicePrefetcher(loader, Classifier(), capacity=10)
        prefetcher.arrived("a")
        return await prefetcher.take("a")
    assert run(scenario(Loader(fail=True))) is None
    assert run(scenario(Loader(modality="CT"))) is None


def test_capacity_zero_turns_it_off():
    loader = Loader()

    async def scenario():
        prefetcher = SlicePrefetcher(loader, Classifier(), capacity=0)
        prefetcher.arrived("a")
        return await prefetcher.take("a")
    assert run(scenario()) is None and loader.fetched == []


def test_a_study_is_named_once_a_series_has_all_its_declared_slices():
    async def scenario(declared):
        prefetcher = SlicePrefetcher(Loader(declared=declared), Classifier(), capacity=10)
        named = []
        for orthanc_id in "abc":
            prefetcher.arrived(orthanc_id)
            await prefetcher.take(orthanc_id)
            named.append(prefetcher.complete_studies())
        return named, prefetcher.declared_size("1.2.3.4")
    assert run(scenario(3)) == ([[], [], ["1.2.3"]], 3)
    assert run(scenario(None)) == ([[], [], []], None)  # headers that do not say: StableStudy decides
