/**
 * Two data-movement primitives the synthesis network needs: ONNX DepthToSpace / SpaceToDepth with block 2
 * in DCR order, each the other's adjoint. They interleave the four phases of a polyphase upsampling conv:
 * out[n, c, 2h + i, 2w + j] = in[n, (2i + j)·C + c, h, w].
 */
import { ShapeError, type Value } from '../../graph/graph.js';
import { A, apply, type Op } from '../../ops/op.js';

const depthToSpaceOp: Op = {
  name: 'depth_to_space2',
  infer: ([x]) => [{ shape: [x.shape[0], x.shape[1] / 4, x.shape[2] * 2, x.shape[3] * 2], dtype: x.dtype }],
  lower: (e, n) =>
    e.emit('DepthToSpace', [e.name(n.inputs[0])], [e.name(n.outputs[0])], {
      blocksize: A.int(2),
      mode: A.string('DCR'),
    }),
  vjp: (_n, [g]) => [g && spaceToDepth2(g)],
};

const spaceToDepthOp: Op = {
  name: 'space_to_depth2',
  infer: ([x]) => [{ shape: [x.shape[0], x.shape[1] * 4, x.shape[2] / 2, x.shape[3] / 2], dtype: x.dtype }],
  lower: (e, n) =>
    e.emit('SpaceToDepth', [e.name(n.inputs[0])], [e.name(n.outputs[0])], { blocksize: A.int(2) }),
  vjp: (_n, [g]) => [g && depthToSpace2(g)],
};

/** [N, 4C, H, W] → [N, C, 2H, 2W], channel (2i + j)·C + c going to pixel offset (i, j). */
export function depthToSpace2(x: Value): Value {
  if (x.rank !== 4 || x.shape[1] % 4 !== 0)
    throw new ShapeError(`depth_to_space2 needs [N, 4C, H, W], got [${x.shape}]`);
  return apply(depthToSpaceOp, [x]);
}

/** [N, C, 2H, 2W] → [N, 4C, H, W], the inverse (and adjoint) of depthToSpace2. */
export function spaceToDepth2(x: Value): Value {
  if (x.rank !== 4 || x.shape[2] % 2 !== 0 || x.shape[3] % 2 !== 0)
    throw new ShapeError(`space_to_depth2 needs [N, C, 2H, 2W], got [${x.shape}]`);
  return apply(spaceToDepthOp, [x]);
}
