// Copies MQTT.js's browser build and licence from node_modules into the broker's embedded assets.
// Update: bump "mqtt" in package.json, `npm install`, `npm run vendor-mqtt`, rebuild fulmar, run the browser test.
import { copyFileSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const vendor = join(here, '..', '..', 'crates', 'fulmar-server', 'assets', 'vendor');
const pkgDir = dirname(createRequire(import.meta.url).resolve('mqtt/package.json'));
const { version } = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));

copyFileSync(join(pkgDir, 'dist', 'mqtt.min.js'), join(vendor, 'mqtt.min.js'));
copyFileSync(join(pkgDir, 'LICENSE.md'), join(vendor, 'LICENSE.md'));
console.log(`vendored mqtt@${version} into ${vendor}`);
