import type { InstanceConfig } from '../config/types.js';
import { Instance } from '../engine/instance.js';
import { formatProblem } from '../errors.js';

/** `tablesync setup`: installs or upgrades state tables and capture triggers, and says what it did. */
export async function setupCommand(configs: readonly InstanceConfig[], out: NodeJS.WritableStream): Promise<number> {
  for (const config of configs) {
    const instance = await Instance.open(config);
    try {
      const report = await instance.installCapture();
      const tables = [...new Set([...report.created, ...report.unchanged].map((t) => t.table))];
      const state =
        report.state.from === report.state.to
          ? `up to date (version ${report.state.to})`
          : report.state.from === 0
            ? `created (version ${report.state.to})`
            : `upgraded from version ${report.state.from} to ${report.state.to}`;
      out.write(`instance ${config.instance}: ${instance.database.target}\n`);
      out.write(`  state tables: ${state}\n`);
      out.write(
        `  capture on ${tables.join(', ')}: ${report.created.length} triggers created, ${report.dropped.length} dropped, ${report.unchanged.length} already in place\n`,
      );
      for (const warning of instance.warnings) out.write(`  warning: ${formatProblem(warning)}\n`);
    } finally {
      await instance.close();
    }
  }
  return 0;
}
