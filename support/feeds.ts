// The inputs and outputs of a graph run in some runtime, as tests and scripts pass them around.

/** Float32 inputs by name; a scalar has shape []. */
export type Float32Feeds = Record<string, { shape: readonly number[]; data: ArrayLike<number> }>;

/** A graph's outputs by name. */
export type Outputs = Record<string, ArrayLike<number>>;
