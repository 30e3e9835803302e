// The Grafana dashboard's uid, as the README and the provisioning file name it, is the dashboard file's:
// a link or an alert annotation built from the documented uid must open the dashboard.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <string>

namespace rapport {
namespace {

std::string read_source(const std::string& path) {
  std::ifstream in(std::string(RAPPORT_SOURCE_DIR) + "/" + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string dashboard_uid() {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string_view uid;
  if (parser.parse(read_source("metrics/grafana/rapport.json")).get(doc) != simdjson::SUCCESS ||
      doc["uid"].get_string().get(uid) != simdjson::SUCCESS) {
    return "";
  }
  return std::string(uid);
}

TEST(DashboardUidTest, TheReadmeNamesTheDashboardFilesUid) {
  const std::string uid = dashboard_uid();
  ASSERT_FALSE(uid.empty()) << "metrics/grafana/rapport.json has no top-level \"uid\"";
  const std::string readme = read_source("README.md");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(readme, m, std::regex(R"(metrics/grafana/rapport\.json` \(uid `([^`]+)`)")))
      << "README.md no longer names the dashboard's uid after `metrics/grafana/rapport.json`";
  EXPECT_EQ(m[1].str(), uid) << "README.md names the dashboard uid '" << m[1] << "', the file has '" << uid << "'";
}

TEST(DashboardUidTest, TheProvisioningFileNamesTheDashboardFilesUid) {
  const std::string uid = dashboard_uid();
  const std::string yml = read_source("metrics/grafana/provisioning/dashboards/rapport.yml");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(yml, m, std::regex(R"re(the dashboard uid is "([^"]+)")re"))) << yml;
  EXPECT_EQ(m[1].str(), uid);
}

}  // namespace
}  // namespace rapport
