"""``automl datasets download NAME --data PATH``: fetch a standard dataset's files, checking
each file's MD5 checksum (torchvision's download utilities), into the folder that
``--dataset NAME --data PATH`` then reads. Nothing is ever downloaded during a search.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from automl import UserError


@dataclass(frozen=True)
class Resource:
    """One file to fetch: its mirrors (tried in order), its name and its MD5."""

    mirrors: tuple[str, ...]
    filename: str
    md5: str
    extract: bool = False


MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
RESOURCES: dict[str, tuple[Resource, ...]] = {
    "mnist": (
        Resource(MNIST_MIRRORS, "train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        Resource(MNIST_MIRRORS, "train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        Resource(MNIST_MIRRORS, "t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        Resource(MNIST_MIRRORS, "t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
    "fashion-mnist": (
        Resource(FASHION_MIRRORS, "train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        Resource(FASHION_MIRRORS, "train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        Resource(FASHION_MIRRORS, "t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        Resource(FASHION_MIRRORS, "t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ),
    "cifar10": (
        Resource(("https://www.cs.toronto.edu/~kriz/",), "cifar-10-binary.tar.gz",
                 "c32a1d4ab5d03f1284b67883e8d87530", extract=True),
    ),
}


def download(name: str, path: str) -> list[str]:
    """Fetch dataset ``name`` into ``path`` (created when missing), verifying MD5 checksums.
    A file already there with the right checksum is not fetched again. Returns the files."""
    from torchvision.datasets.utils import check_integrity, download_and_extract_archive, download_url, extract_archive

    if name not in RESOURCES:
        raise UserError(f"unknown dataset {name!r} to download; choices: {', '.join(RESOURCES)}")
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise UserError(f"--data {root} is a file, not a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {root}: {exc.strerror or exc}") from None
    done = []
    for res in RESOURCES[name]:
        target = root / res.filename
        if not check_integrity(str(target), res.md5):
            errors = []
            for mirror in res.mirrors:
                try:
                    fetch = download_and_extract_archive if res.extract else download_url
                    fetch(mirror + res.filename, str(root), filename=res.filename, md5=res.md5)
                    break
                except (OSError, RuntimeError, ValueError) as exc:
                    errors.append(f"{mirror}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            else:
                raise UserError(f"could not download {res.filename} ({'; '.join(errors)}); "
                                f"copy the files into {root} by hand")
        elif res.extract:
            extract_archive(str(target), str(root))  # verified archive already there: unpack it again
        done.append(str(target))
    return done


def register(app: typer.Typer) -> None:
    """Add the ``datasets`` command group (``download``, ``list``) to the CLI, once."""
    if any(group.name == "datasets" for group in app.registered_groups):
        return
    datasets_app = typer.Typer(help="Standard vision datasets: list them, download them (checksummed).",
                               no_args_is_help=True, rich_markup_mode=None)

    @datasets_app.command("list")
    def list_datasets() -> None:
        """List the datasets that can be downloaded, with their files."""
        for name, resources in RESOURCES.items():
            typer.echo(f"{name}: {', '.join(r.filename for r in resources)}")

    @datasets_app.command("download")
    def download_command(
        name: Annotated[str, typer.Argument(help=f"One of: {', '.join(RESOURCES)}.")],
        data: Annotated[str, typer.Option("--data", help="Folder to put the files in.")],
    ) -> None:
        """Download a dataset's files with checksum verification, for --dataset NAME --data PATH."""
        files = download(name, data)
        typer.echo(f"{name}: {len(files)} file(s) verified in {data}; "
                   f"search with: automl search --plugin vision --dataset {name} --data {data}")

    app.add_typer(datasets_app, name="datasets")
