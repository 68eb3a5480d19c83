"""Output targets: where a video goes, and refusing, before anything is paid, a place it cannot
or must not go (an input, an existing file, a device, an unwritable folder)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from reelgen.download import _finish
from reelgen.errors import DownloadError, InvalidRequest, OutputExists
from reelgen.outputs import check_saveable, check_target, resolve_target

ROOT = os.geteuid() == 0


# -- resolve_target ---------------------------------------------------------------------------


def test_no_output_saves_job_id_mp4_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No -o: the video is ./JOB_ID.mp4, as an absolute path."""
    monkeypatch.chdir(tmp_path)
    assert resolve_target(None, "rg-1") == tmp_path.resolve() / "rg-1.mp4"


def test_a_file_name_is_used_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """-o clip.mp4 saves to clip.mp4 (relative to the current folder)."""
    monkeypatch.chdir(tmp_path)
    assert resolve_target("clip.mp4", "rg-1") == tmp_path.resolve() / "clip.mp4"


def test_an_existing_folder_gets_job_id_mp4(tmp_path: Path) -> None:
    """-o an existing folder saves FOLDER/JOB_ID.mp4 inside it."""
    assert resolve_target(tmp_path, "rg-1") == tmp_path.resolve() / "rg-1.mp4"
    assert resolve_target(str(tmp_path), "rg-1") == tmp_path.resolve() / "rg-1.mp4"


@pytest.mark.parametrize("sep", sorted({"/", os.sep}))
def test_a_trailing_slash_means_a_folder_even_when_missing(tmp_path: Path, sep: str) -> None:
    """-o newdir/ with no such folder saves newdir/JOB_ID.mp4, not a file called newdir."""
    target = resolve_target(str(tmp_path / "newdir") + sep, "rg-1")
    assert target == tmp_path.resolve() / "newdir" / "rg-1.mp4"
    check_target(target)  # a missing folder is made at save time
    assert not (tmp_path / "newdir").exists()


def test_a_missing_path_without_slash_is_a_file(tmp_path: Path) -> None:
    """-o newname (no slash, nothing there) is the file name itself."""
    assert resolve_target(str(tmp_path / "newname"), "rg-1") == tmp_path.resolve() / "newname"


def test_tilde_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """-o ~/clip.mp4 saves in the home folder, not in a folder called ~."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_target("~/clip.mp4", "rg-1") == tmp_path.resolve() / "clip.mp4"
    assert resolve_target("~/", "rg-1") == tmp_path.resolve() / "rg-1.mp4"


# -- check_target: inputs ---------------------------------------------------------------------


def test_the_input_image_is_never_the_output(tmp_path: Path) -> None:
    """-o the input image itself is refused, even with --force."""
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"jpeg")
    with pytest.raises(InvalidRequest, match="is the input image; choose another output"):
        check_target(resolve_target(str(image), "rg-1"), inputs=[str(image)], force=True)
    assert image.read_bytes() == b"jpeg"


def test_the_input_image_through_a_symlink_is_refused(tmp_path: Path) -> None:
    """-o a symlink to the input image (or the input given through one) is refused too."""
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"jpeg")
    link = tmp_path / "link.jpg"
    link.symlink_to(image)
    with pytest.raises(InvalidRequest, match="input image"):
        check_target(link, inputs=[image], force=True)
    with pytest.raises(InvalidRequest, match="input image"):
        check_target(image, inputs=[str(link)], force=True)


def test_the_input_image_through_a_hard_link_is_refused(tmp_path: Path) -> None:
    """-o a hard link to the input image is the same file and is refused."""
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"jpeg")
    other = tmp_path / "other.jpg"
    os.link(image, other)
    with pytest.raises(InvalidRequest, match="input image"):
        check_target(other, inputs=[image], force=True)


def test_url_inputs_and_other_files_do_not_block_the_output(tmp_path: Path) -> None:
    """An http(s) input image, a different local one, or none ("") does not stop an output."""
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"jpeg")
    check_target(tmp_path / "clip.mp4", inputs=["https://example.com/clip.mp4", image, ""])


# -- check_target: what is already there -------------------------------------------------------


def test_an_existing_file_needs_force(tmp_path: Path) -> None:
    """-o existing.mp4 is refused with a hint to pass --force; with --force it is allowed."""
    existing = tmp_path / "existing.mp4"
    existing.write_bytes(b"old")
    with pytest.raises(OutputExists, match="exists; pass --force to overwrite it") as info:
        check_target(existing)
    assert str(existing) in str(info.value)
    assert isinstance(info.value, InvalidRequest)
    check_target(existing, force=True)
    assert existing.read_bytes() == b"old"


def test_a_fifo_is_refused_even_with_force(tmp_path: Path) -> None:
    """-o a named pipe is refused whatever the flags: the video would never land there."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InvalidRequest, match="is a fifo, not a regular file"):
        check_target(fifo, force=True)


def test_a_symlink_to_a_fifo_is_refused(tmp_path: Path) -> None:
    """-o a symlink to a named pipe is refused like the pipe itself."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "clip.mp4"
    link.symlink_to(fifo)
    with pytest.raises(InvalidRequest, match="fifo"):
        check_target(link, force=True)


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="no /dev/null on this system")
def test_dev_null_is_never_replaced_by_a_file() -> None:
    """-o /dev/null is refused, even with --force (as root it would become a regular file)."""
    with pytest.raises(InvalidRequest, match="/dev/null is a character device"):
        check_target(resolve_target("/dev/null", "rg-1"), force=True)
    assert Path("/dev/null").is_char_device()


def test_a_folder_passed_directly_is_refused(tmp_path: Path) -> None:
    """A folder given as the final target (not through resolve_target) is refused."""
    with pytest.raises(InvalidRequest, match="is a folder"):
        check_target(tmp_path, force=True)


# -- check_target: the folder -----------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="no /proc on this system")
def test_proc_is_refused_before_paying() -> None:
    """-o /proc/x.mp4 is refused up front (os.access says yes to root; creating a file fails)."""
    with pytest.raises(InvalidRequest, match="cannot create a file in /proc"):
        check_target(Path("/proc/x.mp4"))
    with pytest.raises(InvalidRequest, match="cannot create a file in /proc"):
        check_target(Path("/proc/newdir/x.mp4"))


@pytest.mark.skipif(ROOT, reason="root ignores folder permissions; /proc covers it")
def test_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    """-o into a folder without write permission is refused before paying."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(InvalidRequest, match="cannot create a file in"):
            check_target(folder / "sub" / "clip.mp4")
    finally:
        folder.chmod(0o700)


def test_a_missing_folder_under_a_writable_one_is_fine(tmp_path: Path) -> None:
    """-o a/b/clip.mp4 with a/b missing passes: the folders are made at save time."""
    check_target(tmp_path / "a" / "b" / "clip.mp4")
    assert list(tmp_path.iterdir()) == []  # the probe file is gone, nothing made yet


def test_a_file_in_the_way_of_the_folder_is_refused(tmp_path: Path) -> None:
    """-o file.txt/clip.mp4 (a file where a folder must go) is refused before paying."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    with pytest.raises(InvalidRequest, match=r"file\.txt is not a folder"):
        check_target(blocker / "sub" / "clip.mp4")
    with pytest.raises(InvalidRequest, match="is not a folder"):
        check_target(resolve_target(str(blocker) + "/", "rg-1"))


def test_a_dangling_symlink_in_the_way_of_the_folder_is_refused(tmp_path: Path) -> None:
    """-o into a folder path that is a broken symlink is refused (mkdir would fail later)."""
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(InvalidRequest, match="is not a folder"):
        check_target(tmp_path / "gone" / "clip.mp4")


def test_the_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    """Checking a target leaves the folder as it was (no probe or empty file)."""
    (tmp_path / "keep").write_text("x")
    check_target(tmp_path / "clip.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]


def test_the_probe_really_creates_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writability is proven by creating a file, not by asking os.access."""
    made: list[str] = []
    real_mkstemp = tempfile.mkstemp

    def spy(*, prefix: str, dir: Path) -> tuple[int, str]:
        fd, name = real_mkstemp(prefix=prefix, dir=dir)
        made.append(name)
        return fd, name

    monkeypatch.setattr("reelgen.outputs.tempfile.mkstemp", spy)
    monkeypatch.setattr("os.access", lambda *a, **k: True)
    check_target(tmp_path / "clip.mp4")
    [name] = made
    assert Path(name).parent == tmp_path
    assert Path(name).name.startswith(".reelgen-probe-")
    assert not Path(name).exists()


# -- check_saveable ---------------------------------------------------------------------------


def test_saving_over_nothing_or_a_file_is_allowed(tmp_path: Path) -> None:
    """The final rename may create the file or replace a regular file (--force)."""
    check_saveable(tmp_path / "new.mp4")
    (tmp_path / "old.mp4").write_bytes(b"old")
    check_saveable(tmp_path / "old.mp4")


def test_saving_never_replaces_a_fifo_that_appeared(tmp_path: Path) -> None:
    """A fifo created at the destination during the job is not replaced by the download."""
    part = tmp_path / ".clip.mp4.part"
    part.write_bytes(b"video")
    dest = tmp_path / "clip.mp4"
    os.mkfifo(dest)
    with pytest.raises(DownloadError, match=r"will not replace .*clip\.mp4: it is a fifo") as info:
        _finish(part, dest)
    assert info.value.retryable is False
    assert not dest.is_file()
    assert part.read_bytes() == b"video"  # the paid-for bytes are kept


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="no /dev/null on this system")
def test_saving_never_replaces_a_device() -> None:
    """The final rename refuses /dev/null rather than replacing the device with a file."""
    with pytest.raises(DownloadError, match="character device") as info:
        check_saveable(Path("/dev/null"))
    assert info.value.retryable is False


def test_saving_refuses_a_folder(tmp_path: Path) -> None:
    """The final rename refuses a folder that appeared at the destination."""
    with pytest.raises(DownloadError, match="it is a folder"):
        check_saveable(tmp_path)
