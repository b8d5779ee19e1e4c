/**
 * Serializes graph outputs to an ONNX ModelProto. The bytes are deterministic: nodes in a fixed
 * topological order, names derived from scopes and ids, attributes sorted by name. Weight buffers are
 * referenced, not copied, until the single final copy into the model bytes.
 */
import protobuf from 'protobufjs/minimal.js';
import { type ConstData, type DType, type Node, ShapeError, topoSort, type Value } from '../graph/graph.js';
import type { Emitter, OnnxAttr } from '../ops/op.js';
import { onnxDataType } from '../ops/shape.js';

export const OPSET = 18;
const IR_VERSION = 8;

type W = protobuf.Writer;
const LEN = 2;
const VARINT = 0;
const tag = (w: W, field: number, wire: number) => w.uint32((field << 3) | wire);
const str = (w: W, field: number, s: string) => tag(w, field, LEN).string(s);
const msg = (w: W, field: number, body: (w: W) => void) => {
  tag(w, field, LEN).fork();
  body(w);
  w.ldelim();
};

function bytesOf(data: ConstData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function writeTensor(w: W, name: string, dims: readonly number[], dtype: DType, data: ConstData) {
  for (const d of dims) tag(w, 1, VARINT).int64(d);
  tag(w, 2, VARINT).int32(onnxDataType(dtype));
  str(w, 8, name);
  tag(w, 9, LEN).bytes(bytesOf(data));
}

function writeValueInfo(w: W, name: string, dims: readonly number[], dtype: DType) {
  str(w, 1, name);
  msg(w, 2, (t) =>
    msg(t, 1, (tt) => {
      tag(tt, 1, VARINT).int32(onnxDataType(dtype));
      msg(tt, 2, (s) => {
        for (const d of dims) msg(s, 1, (dim) => tag(dim, 1, VARINT).int64(d));
      });
    }),
  );
}

const ATTR_TYPE = { float: 1, int: 2, string: 3, floats: 6, ints: 7 } as const;

function writeAttr(w: W, name: string, a: OnnxAttr) {
  str(w, 1, name);
  tag(w, 20, VARINT).int32(ATTR_TYPE[a.type]);
  switch (a.type) {
    case 'float':
      tag(w, 2, 5).float(a.v);
      break;
    case 'int':
      tag(w, 3, VARINT).int64(a.v);
      break;
    case 'string':
      tag(w, 4, LEN).bytes(new TextEncoder().encode(a.v));
      break;
    case 'floats':
      for (const f of a.v) tag(w, 7, 5).float(f);
      break;
    case 'ints':
      for (const i of a.v) tag(w, 8, VARINT).int64(i);
      break;
  }
}

interface OnnxNode {
  opType: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attrs: Record<string, OnnxAttr>;
  domain: string;
  name: string;
}

export interface SerializeOptions {
  /** Graph inputs to declare even when no output uses them (defaults to all of the graph's inputs). */
  inputs?: readonly Value[];
}

/** Builds the ModelProto bytes for named outputs. */
export function serialize(outputs: Record<string, Value>, options: SerializeOptions = {}): Uint8Array {
  const outNames = Object.keys(outputs);
  if (outNames.length === 0) throw new ShapeError('serialize: no outputs');
  const outVals = outNames.map((k) => outputs[k]);
  const graph = outVals[0].graph;
  const nodes = topoSort(outVals);

  const names = new Map<Value, string>();
  const usedConsts: Value[] = [];
  const extraInits: { name: string; data: BigInt64Array }[] = [];
  const intsCache = new Map<string, string>();
  const onnxNodes: OnnxNode[] = [];
  let tmpCount = 0;
  let current: Node | undefined;

  const nameOf = (v: Value): string => {
    let n = names.get(v);
    if (n === undefined) {
      if (v.kind === 'node') n = `${v.node!.scope ? `${v.node!.scope}/` : ''}${v.node!.op.name}:${v.id}`;
      else n = v.name!;
      if (v.kind === 'const') usedConsts.push(v);
      names.set(v, n);
    }
    return n;
  };
  const e: Emitter = {
    name: nameOf,
    emit(opType, inputs, outs, attrs = {}, domain = '') {
      const owner = current
        ? `${current.scope ? `${current.scope}/` : ''}${current.op.name}:${current.id}`
        : 'out';
      onnxNodes.push({ opType, inputs, outputs: outs, attrs, domain, name: `${owner}#${onnxNodes.length}` });
    },
    ints(values) {
      const key = values.join(',');
      let n = intsCache.get(key);
      if (!n) {
        n = `ints[${key}]`;
        intsCache.set(key, n);
        extraInits.push({ name: n, data: BigInt64Array.from(values, (v) => BigInt(v)) });
      }
      return n;
    },
    tmp: (hint) => `${hint}~${tmpCount++}`,
  };
  for (const node of nodes) {
    current = node;
    node.op.lower(e, node);
  }
  current = undefined;
  for (const [name, v] of outNames.map((k, i) => [k, outVals[i]] as const)) {
    if (v.graph !== graph) throw new ShapeError(`output ${name} is from another graph`);
    e.emit('Identity', [nameOf(v)], [name]);
  }

  const w = protobuf.Writer.create();
  tag(w, 1, VARINT).int64(IR_VERSION);
  str(w, 2, 'styleclip-ts');
  msg(w, 7, (gw) => {
    for (const n of onnxNodes)
      msg(gw, 1, (nw) => {
        for (const i of n.inputs) str(nw, 1, i);
        for (const o of n.outputs) str(nw, 2, o);
        str(nw, 3, n.name);
        str(nw, 4, n.opType);
        for (const k of Object.keys(n.attrs).sort()) msg(nw, 5, (aw) => writeAttr(aw, k, n.attrs[k]));
        if (n.domain) str(nw, 7, n.domain);
      });
    str(gw, 2, 'styleclip');
    for (const c of usedConsts) msg(gw, 5, (tw) => writeTensor(tw, c.name!, c.shape, c.dtype, c.data!));
    for (const c of extraInits) msg(gw, 5, (tw) => writeTensor(tw, c.name, [c.data.length], 'int64', c.data));
    for (const x of options.inputs ?? graph.inputs)
      msg(gw, 11, (vw) => writeValueInfo(vw, x.name!, x.shape, x.dtype));
    for (const [k, v] of outNames.map((k) => [k, outputs[k]] as const))
      msg(gw, 12, (vw) => writeValueInfo(vw, k, v.shape, v.dtype));
  });
  msg(w, 8, (ow) => {
    str(ow, 1, '');
    tag(ow, 2, VARINT).int64(OPSET);
  });
  // ONNX Runtime's own operator sets (its blocked-layout CPU kernels), version 1.
  for (const domain of [...new Set(onnxNodes.map((n) => n.domain).filter((d) => d !== ''))].sort())
    msg(w, 8, (ow) => {
      str(ow, 1, domain);
      tag(ow, 2, VARINT).int64(1);
    });
  return w.finish();
}
