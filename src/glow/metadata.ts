// The metadata keys glow-onnx writes: into the graphs' metadata_props (read back by the loaders
// and inspect), and into safetensors headers and ODTC string properties (weights, latents,
// training checkpoints). Files already written carry these exact strings.

/** The Glow config as JSON: every graph, weights file, latents file and checkpoint. */
export const META_CONFIG = 'glow_onnx.config';
/** The channel orders of a shuffle model, as JSON. */
export const META_SHUFFLES = 'glow_onnx.shuffles';
/** Whether the weight-only subgraphs were folded into constants ('true' or 'false'). */
export const META_FOLDED = 'glow_onnx.folded';
/** The graph's compute precision. */
export const META_DTYPE = 'glow_onnx.dtype';
/** The graph's batch size, or 'dynamic'. */
export const META_BATCH = 'glow_onnx.batch';
/** The runtime a graph was rewritten for ('opencv'), when not ONNX Runtime. */
export const META_TARGET = 'glow_onnx.target';
/** A training checkpoint's counters and noise state, as JSON. */
export const META_TRAIN_STATE = 'glow_onnx.train_state';
/** The options a training run was started with, as JSON. */
export const META_TRAIN_OPTIONS = 'glow_onnx.train_options';
