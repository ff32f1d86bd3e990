// The driver-matrix scenario through node-postgres, run by
// tests/integration/test_drivers.py: node scenario.js CONNECTION_URL KEY_UUID.
// Prints one JSON object per round (unnamed statements, then named ones):
// what the driver got back, bytes as hex.
"use strict";

const { Client } = require("pg");
const Cursor = require("pg-cursor");

const AD = "convert_to('drivers', 'utf8')";
const ENCRYPT =
  "select pgsodium.crypto_aead_det_encrypt(convert_to($1, 'utf8'), " +
  `${AD}, cast($2 as uuid)) as c`;
const DECRYPT =
  "select convert_from(pgsodium.crypto_aead_det_decrypt(cast($1 as bytea), " +
  `${AD}, cast($2 as uuid)), 'utf8') as p`;
const VALID_KEY =
  "select key_type::text, name from pgsodium.valid_key where id = cast($1 as uuid)";
const ROW_DECRYPT =
  "select id, convert_from(pgsodium.crypto_aead_det_decrypt(secret, " +
  `${AD}, cast($1 as uuid)), 'utf8') as p from driver_rows order by id`;
const ORDINARY =
  "select cast($1 as int) + 1 as a, " +
  "(select sum(g) from generate_series(1, 100) g)::int as b";

async function run(client, key, named) {
  const q = (name, text, values) =>
    client.query(named ? { name, text, values } : { text, values });
  const ciphertext = (await q("enc", ENCRYPT, ["alice ü", key])).rows[0].c;
  const plaintext = (await q("dec", DECRYPT, [ciphertext, key])).rows[0].p;
  const valid = (await q("valid", VALID_KEY, [key])).rows[0];
  const ordinary = (await q("ord", ORDINARY, [41])).rows[0];
  return {
    ciphertext: ciphertext.toString("hex"),
    plaintext,
    valid_key: [valid.key_type, valid.name],
    rows: await cursorRows(client, key),
    ordinary: [ordinary.a, ordinary.b],
  };
}

// pg-cursor reads a portal a few rows at a time: Execute with a row limit and
// Flush, so PortalSuspended comes back between the rounds.
async function cursorRows(client, key) {
  const cursor = client.query(new Cursor(ROW_DECRYPT, [key]));
  const rows = [];
  for (;;) {
    const batch = await cursor.read(7);
    if (batch.length === 0) break;
    for (const row of batch) rows.push([row.id, row.p]);
  }
  await cursor.close();
  return rows;
}

async function main() {
  const [url, key] = process.argv.slice(2);
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    for (const named of [false, true, true]) {
      console.log(JSON.stringify(await run(client, key, named)));
    }
  } finally {
    await client.end();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
