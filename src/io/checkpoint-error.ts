/**
 * The one error type of the checkpoint importers (ZIP container, pickle VM, torch and
 * safetensors dispatch). Messages are a single line that starts with the file's name; names
 * taken from the file are quoted where they appear, and any line break that still slips in
 * (a hostile key or global name) is flattened here so the one-line promise always holds.
 */
export class CheckpointError extends Error {
  override name = 'CheckpointError';

  constructor(message: string, options?: ErrorOptions) {
    super(message.replace(/[\r\n\u2028\u2029]+/g, ' '), options);
  }
}
