"""`nvc info`: what an .nvc stream holds, from its header and units, without decoding a frame."""
from __future__ import annotations

from . import bitstream
from .errors import StreamCut
from .io import ColourMatrix
from .metrics import bitrate, bpp
from .schedule import of_header
from .zoo import entry_by_id


def describe(data: bytes, name: str) -> tuple[dict, list[str]]:
    """What `nvc info` shows of the stream `data` (read from `name`): the fields for --json, and
    the lines it prints."""
    # a live recording cut short, or a damaged stream (as `nvc decode --salvage` reads it): what
    # it holds
    stream, units = bitstream.open_units(bitstream.Reader(data), salvage=True)
    units.keep_cut = True
    read = list(units)
    h, frames = stream.header, len(read)
    cut = units.cut is not None
    if cut:  # the bytes after the last whole unit (a unit half written), so that every byte counts
        stream.unit_bytes["cut"] = len(data) - sum(stream.unit_bytes.values())
    entry = entry_by_id(h.model_id)
    qmap_info = quality_map_info(stream)
    types = "".join("?" if f is None else f.kind.name for f in read)  # I, P; ? lost
    # each unit, framing included
    sizes = [None if f is None else len(bitstream.pack_frame(f)) for f in read]
    damage = [str(e) for e in (units.damage.adapters, units.damage.first, units.cut)
              if e is not None and not isinstance(e, StreamCut)]
    matrix = ColourMatrix(h.colour_matrix).name if h.colour_matrix in ColourMatrix._value2member_map_ \
        else str(h.colour_matrix)
    info = {
        "file": name, "bytes": len(data), "format_version": data[4],
        "model_id": h.model_id, "model": entry.name if entry else None,
        "weights_hash": h.weights_hash.hex(), "width": h.width, "height": h.height,
        "fps": f"{h.fps_num}/{h.fps_den}", "frames": frames, "live": stream.live,
        "cut_short": cut, "lost_frames": units.damage.lost, "damage": damage,
        "sample_aspect": "{}:{}".format(*h.sample_aspect),
        "intra_period": h.intra_period, "quality": h.quality,
        "coded_quality": coded_quality(h.quality, qmap_info), "colour_matrix": matrix,
        "numeric_profile": bitstream.NumericProfile(h.numeric_profile).name.lower(),
        "coder_tables_crc32": f"{h.tables_crc:08x}",
        "coder_tables": "float64" if stream.version >= bitstream.FLOAT64_TABLES_SINCE else "float32",
        "synthesis": {v: k for k, v in bitstream.SYNTHESIS_NAMES.items()}[bitstream.Synthesis(h.synthesis)],
        "gop_schedule": str(of_header(h)),
        "extra_i_frames": [i for i, t in enumerate(types) if t == "I" and i % h.intra_period],
        "quality_map": qmap_info,
        "bpp": bpp(len(data), h.width, h.height, frames) if frames else None,
        "bitrate": bitrate(len(data), h.fps_num / h.fps_den, frames) if frames else None,
        "bytes_per_unit_type": stream.unit_bytes,
        "adapters": adapter_info(stream.adapters, stream.version),
        "frame_types": types, "frame_bytes": sizes,
    }
    per_frame = ("frame_types", "frame_bytes")
    shown = {k: _shown(k, v) for k, v in info.items() if k not in ("bytes_per_unit_type", *per_frame)}
    width = max(map(len, shown))
    lines = [f"{k:>{width}}: {v}" for k, v in shown.items()]
    lines.append("bytes per unit type:")
    lines += [f"{k:>{width}}: {v}" for k, v in stream.unit_bytes.items()]
    lines.append("frames by type (--json lists every frame):")
    for kind in sorted(set(types) - {"?"}):
        of_kind = [n for t, n in zip(types, sizes) if t == kind and n is not None]
        lines.append(f"{kind:>{width}}: {len(of_kind)}, {min(of_kind)}-{max(of_kind)} bytes, mean "
                     f"{sum(of_kind) / len(of_kind):.0f}")
    return info, lines


def _shown(key: str, value):
    """A field as the text summary shows it (--json keeps every digit): bpp to 4 places, the bit
    rate in kb/s."""
    if value is None:
        return value
    if key == "bpp":
        return f"{value:.4f}"
    if key == "bitrate":
        return f"{value / 1000:.1f} kb/s"
    return value


def coded_quality(rung: int, qmap_info: dict | None) -> float | None:
    """The quality the frames were coded at: the header's rung, or a uniform map's (`--quality
    2.5`); None where a region map varies it."""
    if qmap_info is None:
        return rung
    return qmap_info["min_quality"] if qmap_info["min_quality"] == qmap_info["max_quality"] else None


def quality_map_info(stream) -> dict | None:
    """The region quality map's grid and the range of its ladder positions (quality = 1 + position)."""
    if stream.quality_map is None:
        return None
    from .codec import padded_hw
    from .models.config import ModelConfig
    from .roi import map_positions

    h = stream.header
    ph, pw = padded_hw(h.height, h.width, ModelConfig().multiple)
    grid = (ph // 16, pw // 16)  # the padded frame's 16x16 blocks
    pos = map_positions(bitstream.QualityMap.read(stream.quality_map, grid, stream.version))
    return {"grid": f"{grid[1]}x{grid[0]}", "min_quality": round(1 + float(pos.min()), 3),
            "max_quality": round(1 + float(pos.max()), 3), "bytes": len(stream.quality_map)}


def adapter_info(payload: bytes | None, version: int) -> dict | None:
    if payload is None:
        return None
    from .adapted import spec_of
    from .adapters import LAYER_TABLE

    unit = bitstream.AdapterUnit.read(payload, LAYER_TABLE, version)
    return {"type": spec_of(unit).kind.name.lower(), "bytes": len(payload),
            "coded_parameter_bytes": len(unit.coded),
            "values": unit.symbol_count, "layers": dict(zip(unit.layers, unit.ranks)),
            "seed": unit.seed, "quantization_step": unit.step}
