// reidbench results site: sortable tables and the recipe-track filter. No dependencies, nothing fetched.
(function () {
  "use strict";

  function sortKey(row, index) {
    var cell = row.children[index];
    if (!cell) return "";
    return cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
  }

  // Numbers by value, text alphabetically; empty cells last whichever the direction.
  function compare(a, b, numeric, sign) {
    if (a === "" || b === "") return (a === "") - (b === "");
    if (numeric) return sign * (parseFloat(a) - parseFloat(b));
    return sign * a.localeCompare(b, undefined, { numeric: true });
  }

  // Each body of the table (ours, published) is sorted on its own: the blocks stay apart.
  function sortTable(table, th) {
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.getAttribute("data-type") === "number";
    var first = numeric ? "descending" : "ascending";
    var current = th.getAttribute("aria-sort");
    var order = current === first ? (numeric ? "ascending" : "descending") : first;
    Array.prototype.forEach.call(th.parentNode.children, function (other) {
      other.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", order);
    var sign = order === "ascending" ? 1 : -1;
    Array.prototype.forEach.call(table.tBodies, function (body) {
      var rows = Array.prototype.slice.call(body.querySelectorAll("tr.row"));
      rows.sort(function (x, y) {
        return compare(sortKey(x, index), sortKey(y, index), numeric, sign);
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th.sort").forEach(function (th) {
      th.setAttribute("tabindex", "0");
      th.addEventListener("click", function () { sortTable(table, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortTable(table, th); }
      });
    });
  });

  document.querySelectorAll("select.recipe-filter").forEach(function (select) {
    select.addEventListener("change", function () {
      var table = document.getElementById(select.getAttribute("data-table"));
      table.querySelectorAll("tbody.ours tr.row").forEach(function (row) {
        row.hidden = select.value !== "" && row.getAttribute("data-recipe") !== select.value;
      });
    });
  });
})();
