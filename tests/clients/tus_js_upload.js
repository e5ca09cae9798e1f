// Uploads FILE to ENDPOINT (…/uploads) with tus-js-client under Node, as NAME.
// Prints the upload URL on success; exits 1 with the error otherwise.
//   node tus_js_upload.js ENDPOINT FILE NAME [CHUNK_SIZE]
// With TUS_AUTHORIZATION set (e.g. "Bearer <token>"), every request carries it.
const fs = require("fs");
const tus = require("tus-js-client");

const [endpoint, file, name, chunkSize] = process.argv.slice(2);
const upload = new tus.Upload(fs.createReadStream(file), {
  endpoint,
  uploadSize: fs.statSync(file).size,
  chunkSize: chunkSize ? Number(chunkSize) : Infinity,
  metadata: { filename: name, filetype: "application/x-test" },
  retryDelays: [0, 500, 1000, 2000, 3000, 5000],
  headers: process.env.TUS_AUTHORIZATION ? { Authorization: process.env.TUS_AUTHORIZATION } : {},
  onError(error) {
    console.error("upload failed:", error.message || error);
    process.exit(1);
  },
  onSuccess() {
    console.log(upload.url);
  },
});
upload.start();
