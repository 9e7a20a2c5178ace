// Seed scenario 2: an HTTP server that counts GET requests and answers with
// the count. It listens on argv HOST PORT (default 127.0.0.1 and a port the
// kernel picks) and prints "READY <port>" once listening. Connections stay
// open as the client asks (HTTP/1.1 keep-alive), as a real service's do.
const http = require('http');
let count = 0;
const server = http.createServer((req, res) => {
  count++;
  res.end(String(count) + '\n');
});
const host = process.argv[2] || '127.0.0.1';
const port = Number(process.argv[3] || 0);
server.listen(port, host, () => console.log('READY ' + server.address().port));
