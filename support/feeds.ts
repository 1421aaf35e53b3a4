// The inputs and outputs of a graph run in some runtime, as tests and scripts pass them around.

/** Float32 inputs by name; a scalar has shape []. `Data` narrows the values' type where a
 * runtime needs one (ort.Tensor takes a Float32Array). */
export type Float32Feeds<Data extends ArrayLike<number> = ArrayLike<number>> = Record<string, { shape: readonly number[]; data: Data }>;

/** A graph's outputs by name. */
export type Outputs = Record<string, ArrayLike<number>>;
