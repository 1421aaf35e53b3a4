// The glow-onnx command. Every failure ends in one line on stderr and a nonzero exit code:
// 2 for a wrong command line, 1 for anything else.

import { ConfigError } from '../glow/config.js';
import { UsageError } from './args.js';
import { cmdExport, cmdImport, cmdInit, cmdInspect } from './model-commands.js';
import {
  cmdDecode, cmdDiagnose, cmdDirection, cmdEncode, cmdEval, cmdInterpolate, cmdManipulate, cmdReconstruct, cmdSample, cmdVerify,
} from './run-commands.js';
import { cmdArtifacts, cmdTrain } from './train-commands.js';
import { commandUsage, USAGE } from './usage.js';

export { UsageError };

/** A command resolves to its exit code when it is not 0 (a run stopped by Ctrl-C: 130). */
const COMMANDS: Record<string, (argv: string[]) => Promise<void | number>> = {
  init: cmdInit, import: cmdImport, export: cmdExport, inspect: cmdInspect,
  sample: cmdSample, encode: cmdEncode, decode: cmdDecode, reconstruct: cmdReconstruct, interpolate: cmdInterpolate,
  direction: cmdDirection, manipulate: cmdManipulate, eval: cmdEval, verify: cmdVerify, diagnose: cmdDiagnose,
  train: cmdTrain, artifacts: cmdArtifacts,
};

/** Every command main runs (each has its lines in USAGE, which a test checks). */
export const COMMAND_NAMES: readonly string[] = Object.keys(COMMANDS);

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    console.log(USAGE);
    return command ? 0 : 2;
  }
  const known = Object.hasOwn(COMMANDS, command);
  const options = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (known && (options.includes('--help') || options.includes('-h'))) {
    console.log(commandUsage(command));
    return 0;
  }
  const run = COMMANDS[command];
  try {
    if (!known) throw new UsageError(`unknown command '${command}' (commands: ${Object.keys(COMMANDS).join(', ')})`);
    return (await run(rest)) ?? 0;
  } catch (e) {
    const err = e as Error;
    console.error(`glow-onnx ${command}: ${String(err.message).split('\n')[0]}`);
    return err instanceof UsageError || err instanceof ConfigError ? 2 : 1;
  }
}
