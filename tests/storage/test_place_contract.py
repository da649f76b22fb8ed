"""One contract that every kind of place keeps, whatever holds its files: a local folder, or
the objects of an S3 bucket (the lab's SeaweedFS). A new kind of place subclasses
``PlaceContract`` with a fixture that makes an empty tree of its kind."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from sentinel2_l1c.errors import InputDataError, RemoteError
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_locations
from sentinel2_l1c.storage.places import BucketPlace, FolderPlace, Place

FILES = {
    "zarr.json": b'{"zarr_format": 3}',
    "35VLH/2024/data/c/0/0/0/0": bytes(range(256)) * 40,  # 10 240 bytes
    "empty": b"",
}


class PlaceContract:
    """The operations every reader, publisher and stager relies on."""

    @pytest.fixture()
    def empty(self) -> Place:
        """An empty tree of this kind of place."""
        raise NotImplementedError

    @pytest.fixture()
    def tree(self, empty: Place) -> Place:
        for name, data in FILES.items():
            empty.write(name, data)
        return empty

    def test_an_empty_tree_lists_nothing(self, empty: Place) -> None:
        assert empty.files() == {}

    def test_lists_every_file_with_its_size(self, tree: Place) -> None:
        assert tree.exists()
        assert tree.files() == {name: len(data) for name, data in FILES.items()}

    def test_reads_whole_files_and_ranges(self, tree: Place) -> None:
        chunk = FILES["35VLH/2024/data/c/0/0/0/0"]
        name = "35VLH/2024/data/c/0/0/0/0"
        assert tree.read("zarr.json") == FILES["zarr.json"]
        assert tree.read("empty") == b""
        for start, stop in itertools.product((0, 1, 5000, 10_239), (None, 1, 5001, 10_240)):
            assert tree.read(name, start, stop) == chunk[start:stop], (start, stop)
        assert tree.read(name, 10_000, 20_000) == chunk[10_000:]  # past the end: what is there

    def test_missing_files_are_named(self, tree: Place) -> None:
        with pytest.raises(FileNotFoundError):
            tree.read("no/such/file")
        assert tree.missing(["no/such/file", "zarr.json"]) == "no/such/file"
        assert tree.missing(["zarr.json"]) is None

    def test_a_write_replaces_a_file_whole(self, tree: Place) -> None:
        tree.write("zarr.json", b"{}")
        assert tree.read("zarr.json") == b"{}"
        tree.write("zarr.json", b'{"zarr_format": 3, "node_type": "group"}' * 100)
        assert tree.read("zarr.json", 0, 10) == b'{"zarr_for'
        assert set(tree.files()) == set(FILES)  # no temporary names left to list

    def test_fetches_a_file_to_a_local_copy(self, tree: Place, tmp_path: Path) -> None:
        name = "35VLH/2024/data/c/0/0/0/0"
        target = tmp_path / "copy" / "chunk"
        tree.fetch(name, len(FILES[name]), target)
        assert target.read_bytes() == FILES[name]
        tree.files()  # what is_current compares with
        assert tree.is_current(name, target)

    def test_a_copy_that_is_not_what_was_listed_is_refused(
        self, tree: Place, tmp_path: Path
    ) -> None:
        """The file changed between the listing and the copy (a folder: its size; S3: the
        MD5 in its ETag): no copy is left, and the error names the file."""
        name = "35VLH/2024/data/c/0/0/0/0"
        listed = tree.files()[name]
        tree.write(name, bytes(reversed(FILES[name])))  # same size, other bytes
        target = tmp_path / "copy" / "chunk"
        size = listed + (1 if isinstance(tree, FolderPlace) else 0)
        with pytest.raises((InputDataError, RemoteError), match=name):
            tree.fetch(name, size, target)
        assert not target.exists()


class TestFolderPlace(PlaceContract):
    @pytest.fixture()
    def empty(self, tmp_path: Path) -> Place:
        return FolderPlace(tmp_path / "tree")

    def test_hidden_files_are_not_listed(self, tree: Place) -> None:
        """Temporary outputs (``.name.tmp-…``) of a killed writer are not part of the tree."""
        assert isinstance(tree, FolderPlace)
        (tree.path / ".zarr.json.tmp-0123456789ab").write_bytes(b"half")
        assert set(tree.files()) == set(FILES)


class TestBucketPlace(PlaceContract):
    @pytest.fixture()
    def empty(self, local_cdse: LocalCdse, tmp_path: Path) -> Place:
        bucket = f"contract-{tmp_path.name[-20:].lower().replace('_', '-')}"
        local_cdse.store.client(local_cdse.storage_user).create_bucket(Bucket=bucket)
        locations = local_cdse.locations(lab_locations(tmp_path / "lab"))
        return BucketPlace(locations.s3_account, bucket)
