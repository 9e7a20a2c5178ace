// Seed scenario 2: an HTTP server that counts GET requests and answers with
// the count. It listens on 127.0.0.1 on a port the kernel picks and prints
// "READY <port>" once listening.
const http = require('http');
let count = 0;
const server = http.createServer((req, res) => {
  count++;
  res.setHeader('Connection', 'close');
  res.end(String(count) + '\n');
});
server.listen(0, '127.0.0.1', () => console.log('READY ' + server.address().port));
