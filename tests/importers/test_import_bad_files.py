"""Damaged, hostile and unsupported files give a clear ModelFileError / UnsupportedLayer: never a crash or a hang."""

from __future__ import annotations

import json
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from importer_files import (
    FILES,
    layer_config,
    members,
    with_config,
    with_weights,
    write_archive,
)

from rnnserve.errors import ModelFileError, UnsupportedLayer
from rnnserve.importers import Limits, isolation, load_spec

KERAS = FILES / "k3_func_emb_mask.keras"
LEGACY_K2 = FILES / "k2_seq_mixed.h5"


def _zeros_member(archive: zipfile.ZipFile, name: str, size: int) -> None:
    """A deflated member of `size` zero bytes, streamed from one 4 KiB block (the test never holds `size`)."""
    block = bytes(4096)
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with archive.open(info, "w") as member:
        for _ in range(size // len(block)):
            member.write(block)


def _bomb(path: Path, name: str, size: int) -> Path:
    content = members(KERAS)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in content.items():
            if member == name:
                _zeros_member(archive, name, size)
            else:
                archive.writestr(member, data)
    return path


def _fails_fast(path: Path, error: type[Exception], match: str) -> None:
    """Importing `path` raises `error` quickly, isolated or not, and the reader allocates nothing near the
    declared sizes (measured in-process, where tracemalloc sees the reader)."""
    with pytest.raises(error, match=match):
        load_spec(path)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(error, match=match):
            load_spec(path, limits=Limits(isolate=False))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 5.0
    assert peak < 8 << 20, f"peak Python allocation {peak} bytes"


# ---- not a model file ------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such model file"):
        load_spec(tmp_path / "absent.keras")


def test_unknown_suffix_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x01")
    with pytest.raises(ModelFileError, match=r"model\.onnx.*unknown model file type"):
        load_spec(path)


def test_saved_model_folder_says_how_to_resave(tmp_path: Path) -> None:
    (tmp_path / "exported").mkdir()
    (tmp_path / "exported" / "saved_model.pb").write_bytes(b"\x08\x01")
    with pytest.raises(ModelFileError, match="SavedModel") as info:
        load_spec(tmp_path / "exported")
    assert 'model.save("m.keras")' in str(info.value) and 'save_model(model, "m.keras")' in str(info.value)


def test_plain_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="is a directory"):
        load_spec(tmp_path)


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "text.keras"
    path.write_text("this is not a zip archive")
    with pytest.raises(ModelFileError, match="not a readable zip archive"):
        load_spec(path)


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "text.h5"
    path.write_text("this is not an HDF5 file")
    with pytest.raises(ModelFileError, match="not a readable HDF5 file"):
        load_spec(path)


def test_suffix_mixups_are_named(tmp_path: Path) -> None:
    as_h5 = tmp_path / "archive.h5"
    as_h5.write_bytes(KERAS.read_bytes())
    with pytest.raises(ModelFileError, match="rename it to .keras"):
        load_spec(as_h5)
    as_keras = tmp_path / "legacy.keras"
    as_keras.write_bytes(LEGACY_K2.read_bytes())
    with pytest.raises(ModelFileError, match="rename it to .h5"):
        load_spec(as_keras)


# ---- truncated and damaged ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [KERAS, LEGACY_K2, FILES / "k3_func_lstm_state.h5"], ids=lambda p: p.name)
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.97])
def test_truncated_files(source: Path, fraction: float, tmp_path: Path) -> None:
    data = source.read_bytes()
    path = tmp_path / source.name
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelFileError):
        load_spec(path)


def test_truncated_weights_member(tmp_path: Path) -> None:
    content = members(KERAS)
    content["model.weights.h5"] = content["model.weights.h5"][:2000]
    with pytest.raises(ModelFileError, match=r"model\.weights\.h5 is not a readable HDF5 file"):
        load_spec(write_archive(tmp_path / "m.keras", content))


@pytest.mark.parametrize("member", ["config.json", "metadata.json", "model.weights.h5"])
def test_missing_member(member: str, tmp_path: Path) -> None:
    content = members(KERAS)
    del content[member]
    with pytest.raises(ModelFileError, match=f"has no '{member}'"):
        load_spec(write_archive(tmp_path / "m.keras", content))


@pytest.mark.parametrize(
    ("member", "data", "match"),
    [
        ("config.json", b'{"class_name": "Functional", "config": {', "config.json is not valid JSON"),
        ("config.json", b"\xff\xfe not utf-8", "not UTF-8"),
        ("metadata.json", b"[1, 2", "metadata.json is not valid JSON"),
        ("metadata.json", b'{"keras_version": 3}', "no valid keras_version"),
        ("metadata.json", b'{"keras_version": "1.2.2"}', "Keras 2 and Keras 3"),
        ("config.json", b'{"class_name": "MyModel", "config": {}}', "subclassed"),
        ("config.json", b"[]", "expected an object"),
    ],
)
def test_bad_json(member: str, data: bytes, match: str, tmp_path: Path) -> None:
    content = members(KERAS)
    content[member] = data
    with pytest.raises(ModelFileError, match=match):
        load_spec(write_archive(tmp_path / "m.keras", content))


@pytest.mark.parametrize("depth", [70, 200_000])
def test_deeply_nested_json(depth: int, tmp_path: Path) -> None:
    content = members(KERAS)
    content["config.json"] = b"[" * depth + b"]" * depth
    with pytest.raises(ModelFileError, match="nested"):
        load_spec(write_archive(tmp_path / "m.keras", content))


def test_legacy_h5_with_bad_model_config(tmp_path: Path) -> None:
    path = tmp_path / "m.h5"
    path.write_bytes(LEGACY_K2.read_bytes())
    with h5py.File(path, "r+") as h5:
        h5.attrs["model_config"] = "{" * 10
    with pytest.raises(ModelFileError, match="model_config attribute is not valid JSON"):
        load_spec(path)


def test_weights_only_h5(tmp_path: Path) -> None:
    path = tmp_path / "weights.h5"
    path.write_bytes(LEGACY_K2.read_bytes())
    with h5py.File(path, "r+") as h5:
        del h5.attrs["model_config"]
    with pytest.raises(ModelFileError, match="holds weights only"):
        load_spec(path)


# ---- zip bombs ---------------------------------------------------------------------------------------------------


def test_zip_member_declaring_more_than_the_cap(tmp_path: Path) -> None:
    # 17 MiB of zeros deflate to ~17 KB; config.json may hold at most 16 MiB.
    _fails_fast(_bomb(tmp_path / "m.keras", "config.json", 17 << 20), ModelFileError, "more than the .*-byte limit")


def test_zip_member_with_an_impossible_ratio(tmp_path: Path) -> None:
    # 4 MiB of zeros stored in ~4 KB: far beyond the ratio a real weights file has.
    _fails_fast(_bomb(tmp_path / "m.keras", "model.weights.h5", 4 << 20), ModelFileError, "zip bomb")


def test_zip_member_expanding_past_what_it_declares(tmp_path: Path) -> None:
    """The headers claim 100 bytes; the deflate stream holds 8 MiB. Reading stops at the claim."""
    path = _bomb(tmp_path / "m.keras", "config.json", 8 << 20)
    _patch_declared_size(path, "config.json", 100)
    _fails_fast(path, ModelFileError, "config.json")


def _patch_declared_size(path: Path, name: str, size: int) -> None:
    """Rewrite the uncompressed size of member `name` in its local header and its central directory entry."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        local = archive.getinfo(name).header_offset
    struct.pack_into("<I", data, local + 22, size)
    central = data.find(b"PK\x01\x02")
    while central >= 0:
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46 : central + 46 + name_len] == name.encode():
            struct.pack_into("<I", data, central + 24, size)
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo(name).file_size == size


def test_too_many_members(tmp_path: Path) -> None:
    content = members(KERAS) | {f"assets/{i}": b"" for i in range(100)}
    with pytest.raises(ModelFileError, match="members, more than the limit"):
        load_spec(write_archive(tmp_path / "m.keras", content))


def test_weights_budget() -> None:
    with pytest.raises(ModelFileError, match="past the 64-byte limit"):
        load_spec(LEGACY_K2, limits=Limits(max_weights_bytes=64))


# ---- unsupported models -------------------------------------------------------------------------------------------


def test_unsupported_layer_names_layer_class_and_supported_list() -> None:
    with pytest.raises(UnsupportedLayer, match=r"layer 'conv' has class 'Conv1D'.*supported: InputLayer, .*SimpleRNN"):
        load_spec(FILES / "k3_func_conv.keras")


def test_initial_state_computed_by_a_layer() -> None:
    with pytest.raises(UnsupportedLayer, match="initial_state is computed by layer 'init'"):
        load_spec(FILES / "k3_func_computed_state.keras")


def test_keras3_mask_dropped_by_initial_state() -> None:
    with pytest.raises(UnsupportedLayer, match="Keras applies no mask here"):
        load_spec(FILES / "k3_func_mask_initial_state.keras")


def _edited(tmp_path: Path, source: str, layer: str, **changes: Any) -> Path:
    def edit(config: dict[str, Any]) -> None:
        layer_config(config, layer)["config"].update(changes)

    return with_config(FILES / source, tmp_path / "m.keras", edit)


@pytest.mark.parametrize(
    ("layer", "changes", "match"),
    [
        ("gru", {"use_cudnn_magic": True}, "argument 'use_cudnn_magic' is not supported"),
        ("gru", {"recurrent_activation": "threshold"}, "recurrent_activation='threshold'"),
        ("gru", {"activation": "glu"}, "activation='glu'"),
        ("gru", {"activation": {"class_name": "MyAct", "config": {}}}, "serialized objects"),
        ("emb", {"dtype": "int32"}, "dtype policy 'int32' is not supported"),
        ("emb", {"dtype": {"class_name": "DTypePolicy", "config": {"name": "mixed_float16"}}}, "mixed_float16"),
        ("emb", {"quantization_config": {"mode": "int8"}}, "quantization_config"),
        ("gru", {"stateful": True}, "no single fixed batch size"),
    ],
)
def test_unsupported_arguments_are_named(layer: str, changes: dict[str, Any], match: str, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedLayer, match=match):
        load_spec(_edited(tmp_path, "k3_func_emb_mask.keras", layer, **changes))


def test_custom_backward_layer(tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        layer_config(config, "bi_lstm")["config"]["backward_layer"]["config"]["activation"] = "relu"

    with pytest.raises(UnsupportedLayer, match="backward_layer"):
        load_spec(with_config(FILES / "k3_func_masking_bidi.keras", tmp_path / "m.keras", edit))


def test_shared_layer(tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        gru = layer_config(config, "gru")
        gru["inbound_nodes"] = gru["inbound_nodes"] * 2

    with pytest.raises(UnsupportedLayer, match="shared layers"):
        load_spec(with_config(KERAS, tmp_path / "m.keras", edit))


def test_explicit_mask_from_a_model_input(tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        mask = layer_config(config, "gru")["inbound_nodes"][0]["kwargs"]["mask"]
        mask["config"]["keras_history"] = ["tokens", 0, 0]

    with pytest.raises(UnsupportedLayer, match="explicit mask from 'tokens'"):
        load_spec(with_config(KERAS, tmp_path / "m.keras", edit))


def test_mask_op_used_as_data(tmp_path: Path) -> None:
    config = json.loads(members(KERAS)["config.json"])
    op = next(layer["name"] for layer in config["config"]["layers"] if layer["class_name"] == "NotEqual")

    def edit(config: dict[str, Any]) -> None:
        config["config"]["output_layers"] = [["td", 0, 0], [op, 0, 0]]

    with pytest.raises(UnsupportedLayer, match="class 'NotEqual'"):
        load_spec(with_config(KERAS, tmp_path / "m.keras", edit))


# ---- weights -------------------------------------------------------------------------------------------------------


def test_missing_weight_in_keras_archive(tmp_path: Path) -> None:
    def drop_bias(h5: h5py.File) -> None:
        del h5["layers/gru/cell/vars/2"]

    with pytest.raises(ModelFileError, match="layer 'gru' weight 'bias' is missing"):
        load_spec(with_weights(KERAS, tmp_path / "m.keras", drop_bias))


def test_missing_layer_group_in_keras_archive(tmp_path: Path) -> None:
    def drop_layer(h5: h5py.File) -> None:
        del h5["layers/time_distributed"]

    with pytest.raises(ModelFileError, match="no weights for layer 'td'"):
        load_spec(with_weights(KERAS, tmp_path / "m.keras", drop_layer))


def test_misshaped_weight_names_layer_weight_and_shapes(tmp_path: Path) -> None:
    def reshape(h5: h5py.File) -> None:
        del h5["layers/gru/cell/vars/1"]
        h5["layers/gru/cell/vars/1"] = np.zeros((4, 11), "float32")

    with pytest.raises(
        ModelFileError, match=r"layer 'gru' weight 'recurrent_kernel' has shape \(4, 11\), expected \(4, 12\)"
    ):
        load_spec(with_weights(KERAS, tmp_path / "m.keras", reshape))


def test_non_float_weight(tmp_path: Path) -> None:
    def to_int(h5: h5py.File) -> None:
        shape = h5["layers/embedding/vars/0"].shape
        del h5["layers/embedding/vars/0"]
        h5["layers/embedding/vars/0"] = np.zeros(shape, "int32")

    with pytest.raises(ModelFileError, match="expected floating point"):
        load_spec(with_weights(KERAS, tmp_path / "m.keras", to_int))


def _legacy_copy(tmp_path: Path, edit: Any) -> Path:
    path = tmp_path / "m.h5"
    path.write_bytes(LEGACY_K2.read_bytes())
    with h5py.File(path, "r+") as h5:
        edit(h5)
    return path


def test_missing_weight_in_legacy_h5(tmp_path: Path) -> None:
    def drop(h5: h5py.File) -> None:
        group = h5["model_weights/lstm"]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["weight_names"]]
        group.attrs["weight_names"] = [n for n in names if not n.endswith("bias:0")]

    with pytest.raises(ModelFileError, match="layer 'lstm' weight 'bias' is missing"):
        load_spec(_legacy_copy(tmp_path, drop))


def test_misshaped_weight_in_legacy_h5(tmp_path: Path) -> None:
    def reshape(h5: h5py.File) -> None:
        del h5["model_weights/dense/dense/kernel:0"]
        h5["model_weights/dense/dense/kernel:0"] = np.zeros((3, 2), "float32")

    with pytest.raises(ModelFileError, match=r"layer 'dense' weight 'kernel' has shape \(3, 2\), expected \(2, 2\)"):
        load_spec(_legacy_copy(tmp_path, reshape))


def test_legacy_h5_links_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.h5"
    with h5py.File(outside, "w") as h5:
        h5["kernel"] = np.zeros((2, 2), "float32")

    def link(h5: h5py.File) -> None:
        del h5["model_weights/dense/dense/kernel:0"]
        h5["model_weights/dense/dense/kernel:0"] = h5py.ExternalLink(str(outside), "kernel")

    with pytest.raises(ModelFileError, match="only hard links are read"):
        load_spec(_legacy_copy(tmp_path, link))


def test_keras_weights_with_a_soft_link(tmp_path: Path) -> None:
    def link(h5: h5py.File) -> None:
        data = h5["layers/embedding/vars/0"][()]
        del h5["layers/embedding/vars/0"]
        h5["elsewhere"] = data
        h5["layers/embedding/vars/0"] = h5py.SoftLink("/elsewhere")

    with pytest.raises(ModelFileError, match="SoftLink"):
        load_spec(with_weights(KERAS, tmp_path / "m.keras", link))


# ---- isolation of the zip and HDF5 parsers ---------------------------------------------------------------------


def test_a_file_that_hangs_the_hdf5_library_is_cut_off() -> None:
    """One corrupted byte in a variable-length string heap makes libhdf5 loop forever reading the attribute."""
    started = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"took more than 1 s"):
        load_spec(FILES / "hostile" / "vlen_heap_loop.keras", limits=Limits(timeout_s=1))
    assert time.perf_counter() - started < 10
    assert load_spec(KERAS).name == KERAS.stem  # the reader server still serves


def test_a_crashed_reader_is_a_model_file_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolation._server, "call", lambda request, timeout: {"status": "killed", "code": 11})
    with pytest.raises(ModelFileError, match=r"crashed the reader \(killed, code 11\)"):
        load_spec(KERAS)


def test_the_reader_server_is_restarted_when_it_dies() -> None:
    load_spec(KERAS)
    process = isolation._server._process
    assert process is not None
    process.kill()
    process.wait()
    assert load_spec(KERAS).layers  # a fresh server answers
    assert isolation._server._process is not process
