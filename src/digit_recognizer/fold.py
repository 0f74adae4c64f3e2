"""Rewrite a trained model as the same function in fewer operations, for export.

On the Keras side, Rescaling and BatchNorm layers are folded into the next layer's weights;
on the ONNX side, Flatten's run-time shape arithmetic becomes one constant Reshape, a
block-diagonal convolution (a merged ensemble's) a grouped one and a block-diagonal matrix
product one product per block, and a calibration temperature goes into the last layer. Each
rewrite is exact (export checks the result against Keras) and leaves a graph it cannot
rewrite exactly as it is.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

# --- Keras: affine layers folded into the next Conv2D or Dense ------------------------------


def _affine(layer: layers.Layer) -> tuple[np.ndarray, np.ndarray] | None:
    """A Rescaling or (inference-mode) BatchNormalization layer as x * scale + shift per
    channel, else None."""
    if isinstance(layer, layers.Rescaling):
        return np.float64(layer.scale), np.float64(layer.offset)
    if isinstance(layer, layers.BatchNormalization) and layer.axis in (-1, 3, [-1], [3]):
        gamma, beta, mean, variance = (np.asarray(w, np.float64) for w in layer.get_weights())
        scale = gamma / np.sqrt(variance + layer.epsilon)
        return scale, beta - mean * scale
    return None


def _folded_weights(layer: layers.Layer, scale, shift) -> list[np.ndarray] | None:
    """Weights of a Conv2D or Dense that first applies x * scale + shift to its input, or
    None where that is not exact: a padded convolution would pad with `shift`, not 0."""
    if isinstance(layer, layers.Conv2D):
        if (layer.padding != "valid" and np.any(shift)) or layer.groups != 1:
            return None
    elif not isinstance(layer, layers.Dense):
        return None
    if not layer.use_bias:
        return None
    kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    inputs = kernel.shape[-2]  # Conv2D (h, w, in, out), Dense (in, out)
    # After Flatten (channels last), feature k is channel k % channels: tile the vectors.
    scale, shift = np.resize(scale, inputs), np.resize(shift, inputs)
    shifted = np.tensordot(kernel, shift, axes=([-2], [0])).reshape(-1, kernel.shape[-1])
    return [
        (kernel * scale[:, None]).astype(np.float32),
        (bias + shifted.sum(0)).astype(np.float32),
    ]


def fold_affine(model: keras.Model) -> keras.Model:
    """An equivalent Sequential model for inference with every Rescaling and BatchNorm folded
    into the next Conv2D or Dense (through Flatten and Dropout, which commute with a per-channel
    map). Fewer operations: the shipped `deep` model answers 20-30 % sooner in ONNX Runtime.
    A model this cannot fold exactly (functional, padded convolution after BatchNorm, ...) is
    returned as it is."""
    if not isinstance(model, keras.Sequential):
        return model
    clones, weights, pending = [], [], None
    for layer in model.layers:
        affine = _affine(layer)
        if affine is not None and pending is None:
            pending = affine
            continue
        layer_weights = [np.asarray(w) for w in layer.get_weights()]
        if pending is not None and not isinstance(layer, layers.Flatten | layers.Dropout):
            layer_weights = _folded_weights(layer, *pending)
            if layer_weights is None:
                return model
            pending = None
        clones.append(layer.__class__.from_config(layer.get_config()))
        weights.append(layer_weights)
    if pending is not None:
        return model
    folded = keras.Sequential([keras.Input(shape=model.input_shape[1:]), *clones], name=model.name)
    for clone, layer_weights in zip(clones, weights, strict=True):
        clone.set_weights(layer_weights)
    return folded


# --- ONNX: constant Flatten and the temperature in the last layer ----------------------------


def _producers(graph) -> dict:
    return {output: node for node in graph.node for output in node.output}


def _consumers(graph, name: str) -> list:
    return [node for node in graph.node if name in node.input]


def _drop_unused(graph) -> None:
    """Remove the nodes and constants that no graph output depends on."""
    needed = {output.name for output in graph.output}
    kept = []
    for node in reversed(graph.node):  # ONNX lists nodes in topological order
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    unused = [tensor for tensor in graph.initializer if tensor.name not in needed]
    for tensor in unused:
        graph.initializer.remove(tensor)


def _static_dims(model) -> dict[str, list]:
    """Each tensor's dimensions as shape inference (with constant propagation) sees them:
    ints where known, names where they depend on the batch."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    return {
        info.name: [dim.dim_value or dim.dim_param for dim in info.type.tensor_type.shape.dim]
        for info in [*inferred.graph.input, *inferred.graph.value_info]
    }


def constant_flatten(model) -> None:
    """Keras's Flatten exports as a Transpose back to channels-last, then six operations
    computing the shape [batch, -1] at run time for a Reshape. Where shape inference shows the
    Reshape gives [batch, k], its shape becomes the constant [-1, k]; where it also reads a
    channels-last Transpose and feeds only a MatMul of constant weights, it reads the
    channels-first tensor and the weight rows are permuted to match: the same sums of the
    same products. About 5 % of the shipped model's time in ONNX Runtime."""
    from onnx import numpy_helper

    graph = model.graph
    dims, producers = _static_dims(model), _producers(graph)
    constants = {tensor.name: tensor for tensor in graph.initializer}
    for reshape in [node for node in graph.node if node.op_type == "Reshape"]:
        source, shape = reshape.input[0], reshape.input[1]
        result, features = dims.get(reshape.output[0], []), dims.get(source, [None])[1:]
        if shape in constants or len(result) != 2 or not isinstance(result[1], int):
            continue
        if not all(isinstance(d, int) for d in features) or np.prod(features) != result[1]:
            continue  # not [batch, everything else]: -1 would not stand for the batch
        constant = numpy_helper.from_array(np.array([-1, result[1]], np.int64), f"{shape}_fixed")
        graph.initializer.append(constant)
        reshape.input[1] = constant.name
        transpose, users = producers.get(source), _consumers(graph, reshape.output[0])
        perm = [list(a.ints) for a in transpose.attribute if a.name == "perm"] if transpose else []
        if (
            perm != [[0, 2, 3, 1]]
            or transpose.op_type != "Transpose"
            or len(_consumers(graph, source)) != 1
            or len(users) != 1
            or users[0].op_type != "MatMul"
            or users[0].input[0] != reshape.output[0]
            or users[0].input[1] not in constants
            or len(_consumers(graph, users[0].input[1])) != 1
        ):
            continue
        height, width, channels = features
        weights = constants[users[0].input[1]]
        rows = numpy_helper.to_array(weights)  # in (height, width, channel) order
        rows = rows.reshape(height, width, channels, -1).transpose(2, 0, 1, 3)
        weights.CopyFrom(numpy_helper.from_array(rows.reshape(result[1], -1), weights.name))
        reshape.input[0] = transpose.input[0]
    _drop_unused(graph)


def diagonal_groups(weights: np.ndarray) -> int:
    """The most groups a kernel splits into along its first two axes (a Conv's (out, in, kh,
    kw), a MatMul's (in, out)): equal blocks on the diagonal, zeros everywhere else (1: none)."""
    rows, columns = weights.shape[:2]
    for groups in range(min(rows, columns), 1, -1):
        if rows % groups or columns % groups:
            continue
        blocks = weights.reshape(groups, rows // groups, groups, columns // groups, -1)
        if not np.swapaxes(blocks, 1, 2)[~np.eye(groups, dtype=bool)].any():
            return groups
    return 1


def diagonal_blocks(weights: np.ndarray, groups: int) -> list[np.ndarray]:
    """The `groups` blocks on the diagonal of `weights` (first two axes)."""
    r, c = weights.shape[0] // groups, weights.shape[1] // groups
    return [weights[g * r : (g + 1) * r, g * c : (g + 1) * c] for g in range(groups)]


def block_diagonal(blocks: list[np.ndarray]) -> np.ndarray:
    """diagonal_blocks' inverse: the blocks on the diagonal of their first two axes, zeros
    elsewhere (how finetune.keras_from_onnx reads a grouped Conv or a split MatMul back)."""
    r, c = blocks[0].shape[:2]
    full = np.zeros((r * len(blocks), c * len(blocks), *blocks[0].shape[2:]), blocks[0].dtype)
    for g, block in enumerate(blocks):
        full[g * r : (g + 1) * r, g * c : (g + 1) * c] = block
    return full


def group_convolutions(model) -> None:
    """Each ungrouped Conv whose constant kernel is block-diagonal (member k's filters read only
    member k's channels, as in ensemble.merge_models) becomes a grouped Conv of the diagonal
    blocks: the zeros are no longer stored nor multiplied, the sums are the same."""
    from onnx import helper, numpy_helper

    constants = {tensor.name: tensor for tensor in model.graph.initializer}
    for conv in [node for node in model.graph.node if node.op_type == "Conv"]:
        group = [a for a in conv.attribute if a.name == "group"]
        if (group and group[0].i != 1) or conv.input[1] not in constants:
            continue
        if len(_consumers(model.graph, conv.input[1])) != 1:
            continue
        kernel = numpy_helper.to_array(constants[conv.input[1]])
        groups = diagonal_groups(kernel)
        if groups == 1:
            continue
        name = conv.input[1]
        grouped = np.concatenate(diagonal_blocks(kernel, groups))  # (out, in / groups, kh, kw)
        constants[name].CopyFrom(numpy_helper.from_array(grouped, name))
        for attribute in group:
            conv.attribute.remove(attribute)
        conv.attribute.append(helper.make_attribute("group", groups))


def split_matmuls(model) -> None:
    """Each MatMul of constant block-diagonal weights (a merged ensemble's first dense layer:
    member k's units read only member k's features) becomes a Split of its input, one MatMul
    per block and a Concat: ONNX has no grouped matrix product, and for one image the zeros'
    reading is most of the layer's time."""
    from onnx import helper, numpy_helper

    graph = model.graph
    constants = {tensor.name: tensor for tensor in graph.initializer}
    replaced = {}  # node index -> the nodes that take its place
    for index, matmul in enumerate(graph.node):
        if matmul.op_type != "MatMul":
            continue
        name = matmul.input[1]
        if name not in constants or len(_consumers(graph, name)) != 1:
            continue
        weights = numpy_helper.to_array(constants[name])
        groups = diagonal_groups(weights)
        if groups == 1:
            continue
        pieces = [f"{matmul.input[0]}_block{g}" for g in range(groups)]
        products = [f"{matmul.output[0]}_block{g}" for g in range(groups)]
        nodes = [helper.make_node("Split", [matmul.input[0]], pieces, axis=1)]
        for g, block in enumerate(diagonal_blocks(weights, groups)):
            graph.initializer.append(numpy_helper.from_array(block, f"{name}_block{g}"))
            nodes.append(helper.make_node("MatMul", [pieces[g], f"{name}_block{g}"], [products[g]]))
        nodes.append(helper.make_node("Concat", products, [matmul.output[0]], axis=1))
        replaced[index] = nodes
    if replaced:
        ordered = [new for k, node in enumerate(graph.node) for new in replaced.get(k, [node])]
        del graph.node[:]
        graph.node.extend(ordered)
        _drop_unused(graph)


def fold_temperature(model, temperature: float) -> bool:
    """Divide the logits feeding the output Softmax by `temperature`, so that the file itself
    gives calibrated probabilities: softmax(z / T) is apply_temperature's softmax(log p / T).
    False, and nothing changed, unless the graph ends in Softmax(x @ W + b) or Softmax(x @ W)
    (a bias of zeros is dropped by the exporter), W and b constant."""
    from onnx import numpy_helper

    graph = model.graph
    producers = _producers(graph)
    constants = {tensor.name: tensor for tensor in graph.initializer}
    softmax = producers.get(graph.output[0].name)
    logits = producers.get(softmax.input[0]) if softmax and softmax.op_type == "Softmax" else None
    names = []
    if logits is not None and logits.op_type == "Add":
        names.append(logits.input[1])
        logits = producers.get(logits.input[0])
    if logits is None or logits.op_type != "MatMul":
        return False
    names.append(logits.input[1])
    if not all(name in constants and len(_consumers(graph, name)) == 1 for name in names):
        return False
    for name in names:
        scaled = numpy_helper.to_array(constants[name]) / np.float32(temperature)
        constants[name].CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), name))
    return True
